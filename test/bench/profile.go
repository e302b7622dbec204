package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"
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
