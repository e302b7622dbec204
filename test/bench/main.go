// Command bench measures Stargate against the obvious alternative, a CRD
// served by kube-apiserver, side by side in one run on one machine and one
// etcd, and against etcd's own write rate. It starts everything itself on
// 127.0.0.1 (test/framework), runs bounded loads, prints one table (median of
// interleaved repetitions, min-max beside it, PASS/MISS against the targets)
// and writes it to test/bench/RESULTS.md.
//
//	go run ./test/bench            # make bench: the full run (about 18 minutes)
//	go run ./test/bench -quick     # make bench-quick: smaller counts (about 4 minutes)
//	go run ./test/bench -scale     # only the million-server section
//	go run ./test/bench -quick -sections campaign   # some sections only; prints, writes -out only if given
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"stargate.io/stargate/test/framework"
)

// sizes of one run.
type sizes struct {
	reps           int
	creates        int   // objects per create run
	concurrencies  []int // client concurrency of create runs
	listObjects    int
	watchEvents    int
	controllerJobs int
	pacedJobs      int
	// The scale section's fleet: Hardware spread over datacenters, Jobs
	// (a tenth of them unfinished).
	scaleDatacenters int
	scaleHardware    int
	scaleJobs        int
	// inFlightJobs are held Running at once by the datacenter API section.
	inFlightJobs int
	// The campaign section: Hardware spread over mock datacenters, all of
	// them repaved by one Campaign, after plainJobs repave Jobs created
	// one by one (the baseline).
	campaignDatacenters int
	campaignHardware    int
	campaignPlainJobs   int
}

var (
	full = sizes{reps: 3, creates: 400, concurrencies: []int{1, 8, 32}, listObjects: 10000, watchEvents: 50, controllerJobs: 2000, pacedJobs: 250, scaleDatacenters: 100, scaleHardware: 1000000, scaleJobs: 100000, inFlightJobs: 10000,
		campaignDatacenters: 10, campaignHardware: 20000, campaignPlainJobs: 500}
	quick = sizes{reps: 3, creates: 150, concurrencies: []int{1, 32}, listObjects: 2000, watchEvents: 30, controllerJobs: 400, pacedJobs: 100, scaleDatacenters: 10, scaleHardware: 20000, scaleJobs: 2000, inFlightJobs: 400,
		campaignDatacenters: 4, campaignHardware: 2000, campaignPlainJobs: 200}
)

func main() {
	quickRun := flag.Bool("quick", false, "smaller counts (make bench-quick)")
	out := flag.String("out", "test/bench/RESULTS.md", "where to write the results table (empty: do not write)")
	profile := flag.String("profile", "", "only profile stargate-apiserver serving creates, into this file")
	profileLists := flag.String("profile-lists", "", "only profile stargate-apiserver serving full lists of the list section's size, into this file")
	scaleOnly := flag.Bool("scale", false, "only the scale section (the fleet of 1,000,000 Hardware; -quick: 20,000); prints, writes -out only if given")
	heapProfile := flag.String("heap-profile", "", "only seed the scale section's fleet, restart stargate-apiserver on it and write its heap profile here")
	heapCached := flag.Bool("heap-profile-cached", false, "with -heap-profile: keep the watch cache of Hardware")
	sectionList := flag.String("sections", "", "only these sections, comma-separated, of "+strings.Join(sectionKeys, ",")+"; prints, writes -out only if given")
	flag.Parse()
	only, err := parseSections(*sectionList)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if *scaleOnly || only != nil {
		outGiven := false
		flag.Visit(func(f *flag.Flag) { outGiven = outGiven || f.Name == "out" })
		if !outGiven {
			*out = ""
		}
	}
	sz, mode := full, "make bench"
	if *quickRun {
		sz, mode = quick, "make bench-quick"
	}
	if only != nil {
		mode = strings.Replace(strings.Replace(mode, "make bench-quick", "go run ./test/bench -quick", 1), "make bench", "go run ./test/bench", 1) +
			" -sections " + *sectionList
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	cluster, err := framework.Start(".", framework.Options{
		// Zero-time operations at the mock datacenters: the controller
		// benchmark measures Stargate, not the simulated machines.
		RepaveDuration: time.Millisecond, RebootDuration: time.Millisecond, PowerDuration: time.Millisecond,
		MockDCMaxRunning: 100000, MockDCInMemory: true,
	})
	if err != nil {
		if cluster != nil {
			cluster.DumpLogs()
			cluster.Stop()
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	defer cluster.Stop()
	b, err := newBench(ctx, cluster, sz)
	if err == nil && *profile != "" {
		if err = b.profileCreates(ctx, *profile, 15); err == nil {
			return
		}
	}
	if err == nil && *profileLists != "" {
		if err = b.profileLists(ctx, *profileLists, 15); err == nil {
			return
		}
	}
	if err == nil && *heapProfile != "" {
		if err = b.profileHeap(ctx, *heapProfile, sz.fleet(), *heapCached); err == nil {
			return
		}
	}
	if err == nil && *scaleOnly {
		mode = strings.Replace(mode, "make bench", "go run ./test/bench -scale", 1)
		err = b.scale(ctx)
	} else if err == nil {
		err = b.run(ctx, only)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		cluster.DumpLogs()
		cluster.Stop() // os.Exit skips the deferred Stop
		os.Exit(1)
	}
	report := b.report(mode, time.Since(start))
	fmt.Print(report)
	if *out != "" {
		if err := os.WriteFile(filepath.Clean(*out), []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			cluster.Stop() // os.Exit skips the deferred Stop
			os.Exit(1)
		}
	}
}

// parseSections reads -sections: nil (every section) when empty.
func parseSections(list string) (map[string]bool, error) {
	if list == "" {
		return nil, nil
	}
	only := map[string]bool{}
	for _, key := range strings.Split(list, ",") {
		if !slices.Contains(sectionKeys, strings.TrimSpace(key)) {
			return nil, fmt.Errorf("-sections: no section %q (the sections: %s)", key, strings.Join(sectionKeys, ", "))
		}
		only[strings.TrimSpace(key)] = true
	}
	return only, nil
}
