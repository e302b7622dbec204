package main

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"time"

	"stargate.io/stargate/test/framework"
)

// versions of what ran, each read from the binary that ran it (its Go build
// information) and, for etcd and kube-apiserver, what the server says of itself.
type versions struct {
	etcdModule, etcdServer   string // go.etcd.io/etcd/server/v3 in etcd's binary; etcd's /version
	kubeModule, kubeServer   string // k8s.io/kubernetes in kube-apiserver's binary; its /version
	stargateApiserver, goVer string // k8s.io/apiserver in stargate-apiserver's binary; its Go
}

func (v versions) String() string {
	return fmt.Sprintf("etcd %s (/version), go.etcd.io/etcd/server/v3 %s; kube-apiserver %s (/version), k8s.io/kubernetes %s; stargate-apiserver k8s.io/apiserver %s, %s",
		v.etcdServer, v.etcdModule, v.kubeServer, v.kubeModule, v.stargateApiserver, v.goVer)
}

// readVersions reads the versions; what cannot be read says why.
func (b *bench) readVersions(ctx context.Context) versions {
	v := versions{
		etcdModule:        moduleVersion(b.c.Bin["etcd"], "go.etcd.io/etcd/server/v3"),
		kubeModule:        moduleVersion(b.c.Bin["kube-apiserver"], "k8s.io/kubernetes"),
		stargateApiserver: moduleVersion(b.c.Bin["stargate-apiserver"], "k8s.io/apiserver"),
		goVer:             "Go unknown",
		etcdServer:        "unknown",
		kubeServer:        "unknown",
	}
	if bi, err := buildinfo.ReadFile(b.c.Bin["stargate-apiserver"]); err == nil {
		v.goVer = bi.GoVersion
	}
	if info, err := b.kube.Discovery().ServerVersion(); err == nil {
		v.kubeServer = info.GitVersion
	} else {
		v.kubeServer = fmt.Sprintf("unknown (%v)", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, b.c.EtcdURL+"/version", nil)
	if err == nil {
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			var body struct {
				Server string `json:"etcdserver"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			v.etcdServer = body.Server
		}
	}
	if err != nil {
		v.etcdServer = fmt.Sprintf("unknown (%v)", err)
	}
	return v
}

// moduleVersion is the version of module in the Go build information of the
// binary at file (the main module or a dependency, after replacements).
func moduleVersion(file, module string) string {
	bi, err := buildinfo.ReadFile(file)
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	if bi.Main.Path == module {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			if d.Replace != nil && d.Replace.Version != "" {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown (not in " + file + "'s build information)"
}

func (b *bench) report(mode string, took time.Duration) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# Benchmark results\n\n")
	if b.versions == (versions{}) { // a run that skipped run(), -scale
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		b.versions = b.readVersions(ctx)
		cancel()
	}
	v := b.versions
	fmt.Fprintf(&s, "`%s` on %s, %s, %s; took %s. Every figure is the median of %d interleaved repetitions with min–max beside it (single runs have no range), "+
		"except latency percentiles, which are taken once over the latencies of every repetition pooled, the per-repetition range beside them. "+
		"The paths run in a different order in every repetition (seed %d; `-seed %d` repeats the orders). "+
		"All processes on 127.0.0.1: one real etcd (%s by its /version, built from go.etcd.io/etcd/server/v3 %s) shared by kube-apiserver (%s by its /version, built from k8s.io/kubernetes %s) "+
		"and stargate-apiserver (k8s.io/apiserver %s, %s; aggregated mode, delegated auth), two mock datacenters (the campaign and datacenter API sections serve their own from the bench's process). Versions are read from the binaries' Go build information and the servers' /version. "+
		"Clients: client-go, QPS unlimited, JSON. CPU and RSS from /proc.\n",
		mode, time.Now().UTC().Format("2006-01-02"), framework.Machine(), runtime.Version(), took.Round(time.Second), b.sz.reps,
		b.seed, b.seed, v.etcdServer, v.etcdModule, v.kubeServer, v.kubeModule, v.stargateApiserver, v.goVer)
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
