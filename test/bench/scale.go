package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/test/framework"
)

// scale seeds the fleet of a large deployment straight into etcd (as the
// server stores it: see seeder), then measures what operators live with at
// that size: restart to ready with the caches filled, the steady memory of
// the replica leading the controllers and of another, reads of one
// datacenter, and a paged list of everything.
func (b *bench) scale(ctx context.Context) error {
	f := b.sz.fleet()
	section := fmt.Sprintf("7. Scale: %d Hardware (~1.3 KB) in %d datacenters, %d Jobs (%d finished), two replicas",
		f.hardware, f.datacenters, f.jobs, f.jobs-f.unfinished)
	// Stargate is down while etcd is filled (as after a crash during a
	// bulk import): it then starts on the whole fleet at once.
	s, err := b.newSeeder(ctx, f)
	if err != nil {
		return fmt.Errorf("learning how the server stores objects: %w", err)
	}
	b.c.Kill("stargate-apiserver", true)
	// From here on, every replica is sized for a million servers (README,
	// "Running a million servers"): Hardware served from etcd rather than a
	// watch cache of every one, a memory limit for a 4 GiB container, and an
	// hourly lookup sweep (the fleet's MACs are not machines at the mock
	// datacenters: the 5-minute default would be 3,300 lookups/s of unknown
	// MACs in the figures).
	b.c.AddStargateFlags([]string{hardwareFromEtcd, "--hardware-recheck=1h"}, []string{"GOMEMLIMIT=3GiB"})
	took, err := b.seedFleet(ctx, s, f)
	if err != nil {
		return err
	}
	b.add(row{section: section, name: "seeding etcd directly (the server's codec, keys and index entries)", value: sample{took.Seconds()}, unit: "s"})
	if size, err := b.etcdMetric(ctx, "etcd_mvcc_db_total_size_in_bytes"); err == nil {
		b.add(row{section: section, name: "etcd database size", value: sample{size / (1 << 20)}, unit: "MiB"})
	}
	start := time.Now()
	if err := b.c.RestartStargate(); err != nil {
		return err
	}
	restart := time.Since(start)
	b.add(row{section: section, name: "start to ready (/readyz: watch caches and controller informers filled; APIService Available)", value: sample{restart.Seconds()}, unit: "s",
		target: "<= 60 s", pass: passIf(restart <= time.Minute)})
	if err := b.checkSeeded(ctx, s, f, 200); err != nil {
		return err
	}
	// A second replica joins and takes its share of the datacenters; then
	// the first is killed: the second drives them all until the first is
	// back and takes its share again.
	port2, err := b.c.StartReplica("stargate-apiserver-2")
	if err != nil {
		return err
	}
	start = time.Now()
	if err := b.c.RestartStargate(); err != nil {
		return err
	}
	restart = time.Since(start)
	b.add(row{section: section, name: "restart of a replica (SIGKILL, start, /readyz with caches filled, APIService Available)", value: sample{restart.Seconds()}, unit: "s",
		target: "<= 60 s", pass: passIf(restart <= time.Minute)})

	settle := 30 * time.Second
	if b.sz.reps < 3 || f.hardware < 100000 {
		settle = 10 * time.Second
	}
	time.Sleep(settle) // the datacenters settle over both replicas; their controllers sync and sweep
	for _, r := range []struct {
		name string
		port int
	}{{"stargate-apiserver", b.c.StargatePort}, {"stargate-apiserver-2", port2}} {
		driven, err := b.drivenBy(ctx, r.port)
		if err != nil {
			return err
		}
		limit := 3072.0 // the figure for a replica that drives nothing
		if driven > 0 {
			limit = 4096.0 // and for one that drives
		}
		rss, heap, err := b.steadyMemory(ctx, r.port, b.c.PID(r.name))
		if err != nil {
			return err
		}
		role := fmt.Sprintf("%s (drives %d of %d datacenters)", r.name, driven, f.datacenters)
		b.add(row{section: section, name: role + ": RSS after a GC", value: sample{rss}, unit: "MiB",
			target: fmt.Sprintf("<= %.0f MiB", limit), pass: passIf(rss <= limit)})
		b.add(row{section: section, name: role + ": Go heap in use after the GC", value: sample{heap}, unit: "MiB"})
	}

	// Reads of one datacenter while the fleet exists, on the replica
	// behind the APIService (Hardware served from etcd).
	if err := b.scaleReads(ctx, section, f, "Hardware from etcd", b.c.StargatePort); err != nil {
		return err
	}
	// A paged list of everything, bounded in time: pages after the first
	// are read from etcd (on every replica: a continue token is served by
	// etcd), and all of them would take longer than etcd keeps the list's
	// snapshot (the server compacts every 5 minutes).
	start = time.Now()
	n, err := listPages(ctx, b.paths[0].client, b.paths[0].gvr, "", 0, time.Minute)
	if err != nil {
		return err
	}
	took = time.Since(start)
	done := n >= f.hardware
	b.add(row{section: section, name: fmt.Sprintf("list every Hardware of every namespace in pages of 500, for at most 60 s: %d listed (%.0f/s)", n, float64(n)/took.Seconds()),
		value: sample{took.Seconds()}, unit: "s", target: fmt.Sprintf("all %d within 60 s", f.hardware), pass: passIf(done)})

	// The other sizing: a replica with a watch cache of every Hardware.
	start = time.Now()
	cachedPort, err := b.c.StartReplicaWith("stargate-apiserver-cached", []string{hardwareFromEtcd}, []string{"GOMEMLIMIT=" + cachedMemLimit})
	if err != nil {
		return err
	}
	b.add(row{section: section, name: "replica with a watch cache of every Hardware: start to ready", value: sample{time.Since(start).Seconds()}, unit: "s",
		target: "<= 60 s", pass: passIf(time.Since(start) <= time.Minute)})
	rss, heap, err := b.steadyMemory(ctx, cachedPort, b.c.PID("stargate-apiserver-cached"))
	if err != nil {
		return err
	}
	b.add(row{section: section, name: fmt.Sprintf("replica with a watch cache of every Hardware: RSS after a GC (GOMEMLIMIT=%s)", cachedMemLimit), value: sample{rss}, unit: "MiB",
		target: "<= 3072 MiB", pass: passIf(rss <= 3072)})
	b.add(row{section: section, name: "replica with a watch cache of every Hardware: Go heap in use after the GC", value: sample{heap}, unit: "MiB"})
	if err := b.scaleReads(ctx, section, f, "Hardware from the watch cache", cachedPort); err != nil {
		return err
	}
	b.c.Kill("stargate-apiserver-cached", false)
	return nil
}

// hardwareFromEtcd turns off the watch cache of Hardware.
const hardwareFromEtcd = "--watch-cache-sizes=hardwares.stargate.io#0"

// cachedMemLimit is the GOMEMLIMIT of the replica that caches every Hardware.
const cachedMemLimit = "6GiB"

// scaleReads measures gets and lists of one datacenter's Hardware on the
// Stargate replica on port.
func (b *bench) scaleReads(ctx context.Context, section string, f fleet, how string, port int) error {
	sg, err := clientset.NewForConfig(b.c.RESTConfig(adminUser, port))
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(b.c.RESTConfig(adminUser, port))
	if err != nil {
		return err
	}
	dc := f.datacenter(f.datacenters / 2)
	hardwares := sg.StargateV1alpha1().Hardwares(dc)
	var gets []time.Duration
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(3, 4))
	names := make([]string, 1000)
	for i := range names {
		_, names[i] = f.hardwareAt(rng.IntN(f.perDatacenter())*f.datacenters + f.datacenters/2)
	}
	if err := framework.FanOut(ctx, len(names), 8, func(i int) error {
		t := time.Now()
		if _, err := hardwares.Get(ctx, names[i], metav1.GetOptions{}); err != nil {
			return err
		}
		mu.Lock()
		gets = append(gets, time.Since(t))
		mu.Unlock()
		return nil
	}); err != nil {
		return err
	}
	p99 := percentile(gets, 99)
	b.add(row{section: section, name: fmt.Sprintf("%s: get one Hardware, p99 of %d at concurrency 8", how, len(gets)), value: sample{float64(p99.Microseconds()) / 1000}, unit: "ms",
		target: "<= 1 s", pass: passIf(p99 <= time.Second)})
	var lists, pagedLists []time.Duration
	for range 10 {
		t := time.Now()
		list, err := hardwares.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		lists = append(lists, time.Since(t))
		if len(list.Items) < f.perDatacenter() {
			return fmt.Errorf("listed %d Hardware in %s, want %d", len(list.Items), dc, f.perDatacenter())
		}
		t = time.Now()
		n, err := countAll(ctx, dyn, b.paths[0].gvr, dc)
		if err != nil {
			return err
		}
		pagedLists = append(pagedLists, time.Since(t))
		if n < f.perDatacenter() {
			return fmt.Errorf("paged through %d Hardware in %s, want %d", n, dc, f.perDatacenter())
		}
	}
	for _, l := range []struct {
		name string
		d    []time.Duration
	}{{"list one datacenter's %d Hardware, p99 of %d", lists}, {"list one datacenter's %d Hardware in pages of 500, p99 of %d", pagedLists}} {
		p99 := percentile(l.d, 99)
		b.add(row{section: section, name: how + ": " + fmt.Sprintf(l.name, f.perDatacenter(), len(l.d)), value: sample{p99.Seconds()}, unit: "s",
			target: "<= 1 s", pass: passIf(p99 <= time.Second)})
	}
	return nil
}

// drivenBy counts the datacenters the replica on port drives now
// (stargate_datacenter_driven).
func (b *bench) drivenBy(ctx context.Context, port int) (int, error) {
	client, err := kubernetesClient(b.c.RESTConfig(adminUser, port))
	if err != nil {
		return 0, err
	}
	raw, err := client.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "stargate_datacenter_driven{") && strings.HasSuffix(line, " 1") {
			n++
		}
	}
	return n, nil
}

// steadyMemory forces a garbage collection in the replica on port (its
// heap profile endpoint does), gives the runtime a moment to return freed
// memory, and reads its RSS and heap in use, in MiB.
func (b *bench) steadyMemory(ctx context.Context, port, pid int) (rss, heap float64, err error) {
	client, err := kubernetesClient(b.c.RESTConfig(adminUser, port))
	if err != nil {
		return 0, 0, err
	}
	if _, err := client.RESTClient().Get().AbsPath("/debug/pprof/heap").Param("gc", "1").DoRaw(ctx); err != nil {
		return 0, 0, err
	}
	time.Sleep(10 * time.Second)
	heapBytes, err := b.stargateMetric(ctx, port, "go_memstats_heap_inuse_bytes")
	if err != nil {
		return 0, 0, err
	}
	return framework.RSSMiB(pid), heapBytes / (1 << 20), nil
}

// stargateMetric reads one unlabelled sample from the /metrics of the
// stargate-apiserver on port.
func (b *bench) stargateMetric(ctx context.Context, port int, name string) (float64, error) {
	client, err := kubernetesClient(b.c.RESTConfig(adminUser, port))
	if err != nil {
		return 0, err
	}
	raw, err := client.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	return metricValue(raw, name)
}

// etcdMetric reads one unlabelled sample from etcd's /metrics.
func (b *bench) etcdMetric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.c.EtcdURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return metricValue(raw, name)
}

func metricValue(exposition []byte, name string) (float64, error) {
	for _, line := range strings.Split(string(exposition), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}

func kubernetesClient(cfg *rest.Config) (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(cfg)
}

// countAll pages through every object of gvr in namespace ("": all) by 500.
func countAll(ctx context.Context, client dynamic.Interface, gvr schema.GroupVersionResource, namespace string) (int, error) {
	return listPages(ctx, client, gvr, namespace, 0, 0)
}

// listPages pages through the objects of gvr in namespace by 500, at most
// pages pages and for at most bound (0: no limit), and returns how many it read.
func listPages(ctx context.Context, client dynamic.Interface, gvr schema.GroupVersionResource, namespace string, pages int, bound time.Duration) (int, error) {
	count, cont, start := 0, "", time.Now()
	for page := 1; ; page++ {
		list, err := client.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{Limit: 500, Continue: cont})
		if err != nil {
			return 0, err
		}
		count += len(list.Items)
		if cont = list.GetContinue(); cont == "" || page == pages || bound > 0 && time.Since(start) > bound {
			return count, nil
		}
	}
}

// installCRD creates hardwares.crd.stargate.io with the schema Stargate
// serves for Hardware (its OpenAPI v3, generated from the same Go types),
// references resolved, so the CRD path validates the same fields.
func (b *bench) installCRD(ctx context.Context, client dynamic.Interface) error {
	raw, err := b.sg.Discovery().RESTClient().Get().AbsPath("/openapi/v3/apis/stargate.io/v1alpha1").DoRaw(ctx)
	if err != nil {
		return err
	}
	schemaJSON, err := hardwareSchema(raw)
	if err != nil {
		return err
	}
	crd := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]interface{}{"name": "hardwares.crd.stargate.io"},
		"spec": map[string]interface{}{
			"group": "crd.stargate.io", "scope": "Namespaced",
			"names": map[string]interface{}{"plural": "hardwares", "singular": "hardware", "kind": "Hardware", "listKind": "HardwareList"},
			"versions": []interface{}{map[string]interface{}{
				"name": "v1alpha1", "served": true, "storage": true,
				"schema":           map[string]interface{}{"openAPIV3Schema": schemaJSON},
				"subresources":     map[string]interface{}{"status": map[string]interface{}{}},
				"selectableFields": []interface{}{map[string]interface{}{"jsonPath": ".spec.mac"}},
			}},
		},
	}}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := client.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		got, err := client.Resource(crdGVR).Get(ctx, "hardwares.crd.stargate.io", metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				m := c.(map[string]interface{})
				if m["type"] == "Established" && m["status"] == "True" {
					// Discovery of the new group takes a moment more.
					time.Sleep(2 * time.Second)
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the CRD was not Established within a minute")
}

// hardwareSchema takes the Hardware schema out of an OpenAPI v3 document and
// makes it a CRD's structural schema: $refs inlined, metadata left to the
// server, extensions a CRD does not take removed.
func hardwareSchema(doc []byte) (map[string]interface{}, error) {
	var openapi struct {
		Components struct {
			Schemas map[string]map[string]interface{} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &openapi); err != nil {
		return nil, err
	}
	schemas := openapi.Components.Schemas
	var resolve func(v interface{}, depth int) interface{}
	resolve = func(v interface{}, depth int) interface{} {
		switch t := v.(type) {
		case map[string]interface{}:
			if depth > 20 {
				return map[string]interface{}{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
			}
			out := map[string]interface{}{}
			for k, val := range t {
				switch {
				case k == "$ref":
					for rk, rv := range resolve(schemas[strings.TrimPrefix(val.(string), "#/components/schemas/")], depth+1).(map[string]interface{}) {
						out[rk] = rv
					}
				case k == "allOf":
					if list, ok := val.([]interface{}); ok && len(list) == 1 {
						for rk, rv := range resolve(list[0], depth+1).(map[string]interface{}) {
							out[rk] = rv
						}
					}
				case k == "default" || k == "x-kubernetes-group-version-kind" || strings.HasPrefix(k, "x-kubernetes-patch"):
				default:
					out[k] = resolve(val, depth+1)
				}
			}
			return out
		case []interface{}:
			out := make([]interface{}, len(t))
			for i := range t {
				out[i] = resolve(t[i], depth)
			}
			return out
		}
		return v
	}
	var hw map[string]interface{}
	for name, s := range schemas {
		if strings.HasSuffix(name, ".v1alpha1.Hardware") {
			hw = s
		}
	}
	if hw == nil {
		return nil, fmt.Errorf("no Hardware schema in Stargate's OpenAPI")
	}
	out := resolve(hw, 0).(map[string]interface{})
	props := out["properties"].(map[string]interface{})
	props["metadata"] = map[string]interface{}{"type": "object"}
	out["type"] = "object"
	return out, nil
}
