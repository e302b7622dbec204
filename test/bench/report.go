package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"stargate.io/stargate/test/framework"
)

func (b *bench) report(mode string, took time.Duration) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# Benchmark results\n\n")
	fmt.Fprintf(&s, "`%s` on %s, %s, %s; took %s. Every figure is the median of %d interleaved repetitions with min–max beside it (single runs have no range). All processes on 127.0.0.1: one real etcd (v3.7.0) shared by kube-apiserver (v1.37.2, built from k8s.io/kubernetes) and stargate-apiserver (aggregated mode, delegated auth), two mock datacenters. Clients: client-go, QPS unlimited, JSON. CPU and RSS from /proc.\n",
		mode, time.Now().UTC().Format("2006-01-02"), framework.Machine(), runtime.Version(), took.Round(time.Second), b.sz.reps)
	s.WriteString(table(b.rows))
	var missed []string
	for _, r := range b.rows {
		if r.pass != nil && !*r.pass {
			missed = append(missed, r.name)
		}
	}
	if len(missed) > 0 {
		fmt.Fprintf(&s, "\nMissed targets: %s. See README's Performance section for what limits each.\n", strings.Join(missed, "; "))
	}
	return s.String()
}
