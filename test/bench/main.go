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
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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
}

var (
	full  = sizes{reps: 3, creates: 400, concurrencies: []int{1, 8, 32}, listObjects: 10000, watchEvents: 50, controllerJobs: 2000, pacedJobs: 250, scaleDatacenters: 100, scaleHardware: 1000000, scaleJobs: 100000, inFlightJobs: 10000}
	quick = sizes{reps: 3, creates: 150, concurrencies: []int{1, 32}, listObjects: 2000, watchEvents: 30, controllerJobs: 400, pacedJobs: 100, scaleDatacenters: 10, scaleHardware: 20000, scaleJobs: 2000, inFlightJobs: 400}
)

func main() {
	quickRun := flag.Bool("quick", false, "smaller counts (make bench-quick)")
	out := flag.String("out", "test/bench/RESULTS.md", "where to write the results table (empty: do not write)")
	profile := flag.String("profile", "", "only profile stargate-apiserver serving creates, into this file")
	profileLists := flag.String("profile-lists", "", "only profile stargate-apiserver serving full lists of the list section's size, into this file")
	scaleOnly := flag.Bool("scale", false, "only the scale section (the fleet of 1,000,000 Hardware; -quick: 20,000); prints, writes -out only if given")
	heapProfile := flag.String("heap-profile", "", "only seed the scale section's fleet, restart stargate-apiserver on it and write its heap profile here")
	heapCached := flag.Bool("heap-profile-cached", false, "with -heap-profile: keep the watch cache of Hardware")
	flag.Parse()
	if *scaleOnly {
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
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
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
		err = b.run(ctx)
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
