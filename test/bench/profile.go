package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"stargate.io/stargate/test/framework"
)

// profileCreates takes a CPU profile of stargate-apiserver while it serves
// direct creates at concurrency 32 for about seconds, writes it to file and
// prints its top functions: how a missed target is looked into.
func (b *bench) profileCreates(ctx context.Context, file string, seconds int) error {
	var prof []byte
	var profErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		prof, profErr = b.sg.Discovery().RESTClient().Get().AbsPath("/debug/pprof/profile").
			Param("seconds", fmt.Sprint(seconds)).Timeout(time.Duration(seconds+30) * time.Second).DoRaw(ctx)
	})
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		ns := fmt.Sprintf("bench-profile-%d", i)
		if err := b.ensureNamespace(ctx, ns); err != nil {
			return err
		}
		if _, err := b.createMany(ctx, b.paths[0], ns, 500, 32, 1024); err != nil {
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
	fmt.Printf("CPU profile of stargate-apiserver serving creates: %s\n%s", file, out)
	return err
}

// profileHeap grows Stargate to hardware Hardware and jobs finished Jobs, as
// the scale section does, then writes its heap profile (after a GC) to file
// and prints the top of it with the RSS: where the memory of a large fleet goes.
func (b *bench) profileHeap(ctx context.Context, file string, hardware, jobs int) error {
	if err := b.ensureNamespace(ctx, "bench-scale"); err != nil {
		return err
	}
	if _, err := b.createMany(ctx, b.paths[0], "bench-scale", hardware, 32, 1024); err != nil {
		return err
	}
	if err := b.controllerSetup(ctx); err != nil {
		return err
	}
	for round := 0; b.finishedJobs < jobs; round++ {
		n := min(b.sz.controllerJobs, jobs-b.finishedJobs)
		if _, _, err := b.jobRound(ctx, fmt.Sprintf("h%d", round), n, 0); err != nil {
			return err
		}
		b.finishedJobs += n
	}
	prof, err := b.sg.Discovery().RESTClient().Get().AbsPath("/debug/pprof/heap").Param("gc", "1").DoRaw(ctx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, prof, 0o644); err != nil {
		return err
	}
	pid := b.c.PID("stargate-apiserver")
	fmt.Printf("%d Hardware, %d finished Jobs: stargate-apiserver RSS %.0f MiB (peak %.0f MiB)\n",
		hardware, b.finishedJobs, framework.RSSMiB(pid), framework.PeakMiB(pid))
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", "-sample_index=inuse_space", file).CombinedOutput()
	fmt.Print(string(out))
	return err
}
