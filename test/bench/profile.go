package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/test/framework"
)

// profileCPU takes a CPU profile of stargate-apiserver while load runs
// round after round for about seconds (after setup), writes it to file and
// prints its top functions: how a missed target is looked into.
func (b *bench) profileCPU(ctx context.Context, what, file string, seconds int, setup func() error, load func(round int) error) error {
	if err := setup(); err != nil {
		return err
	}
	var prof []byte
	var profErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		prof, profErr = b.sg.Discovery().RESTClient().Get().AbsPath("/debug/pprof/profile").
			Param("seconds", fmt.Sprint(seconds)).Timeout(time.Duration(seconds+30) * time.Second).DoRaw(ctx)
	})
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	for round := 0; time.Now().Before(deadline); round++ {
		if err := load(round); err != nil {
			return err
		}
	}
	wg.Wait()
	if profErr != nil {
		return profErr
	}
	if err := os.WriteFile(file, prof, 0o644); err != nil {
		return err
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=35", file).CombinedOutput()
	fmt.Printf("CPU profile of stargate-apiserver serving %s: %s\n%s", what, file, out)
	return err
}

// profileCreates profiles direct creates of 1 KiB Hardware at concurrency 32.
func (b *bench) profileCreates(ctx context.Context, file string, seconds int) error {
	return b.profileCPU(ctx, "creates", file, seconds, func() error { return nil }, func(round int) error {
		ns := fmt.Sprintf("bench-profile-%d", round)
		if err := b.ensureNamespace(ctx, ns); err != nil {
			return err
		}
		_, err := b.createMany(ctx, b.paths[0], ns, 500, 32, 1024)
		return err
	})
}

// profileLists profiles full direct lists of the list section's namespace
// of listObjects Hardware, one at a time.
func (b *bench) profileLists(ctx context.Context, file string, seconds int) error {
	const ns = "bench-profile-list"
	return b.profileCPU(ctx, fmt.Sprintf("full lists of %d Hardware", b.sz.listObjects), file, seconds, func() error {
		if err := b.ensureNamespace(ctx, ns); err != nil {
			return err
		}
		_, err := b.createMany(ctx, b.paths[0], ns, b.sz.listObjects, 32, 1024)
		return err
	}, func(int) error {
		_, err := b.paths[0].client.Resource(b.paths[0].gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		return err
	})
}

// profileHeap seeds the scale section's fleet (with Hardware served from
// etcd, as the scale section sizes replicas; cacheHardware keeps their watch
// cache), restarts Stargate on it, then writes its heap profile (after a GC)
// to file and prints the top of it with the RSS: where a large fleet's
// memory goes.
func (b *bench) profileHeap(ctx context.Context, file string, f fleet, cacheHardware bool) error {
	s, err := b.newSeeder(ctx, f)
	if err != nil {
		return err
	}
	b.c.Kill("stargate-apiserver", true)
	if !cacheHardware {
		b.c.AddStargateFlags([]string{hardwareFromEtcd}, nil)
	}
	if _, err := b.seedFleet(ctx, s, f); err != nil {
		return err
	}
	if err := b.c.RestartStargate(); err != nil {
		return err
	}
	time.Sleep(30 * time.Second) // the controllers sync what they drive
	prof, err := b.sg.Discovery().RESTClient().Get().AbsPath("/debug/pprof/heap").Param("gc", "1").DoRaw(ctx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, prof, 0o644); err != nil {
		return err
	}
	pid := b.c.PID("stargate-apiserver")
	fmt.Printf("%d Hardware, %d Jobs: stargate-apiserver RSS %.0f MiB (peak %.0f MiB)\n",
		f.hardware, f.jobs, framework.RSSMiB(pid), framework.PeakMiB(pid))
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", "-sample_index=inuse_space", file).CombinedOutput()
	fmt.Print(string(out))
	return err
}
