package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/test/framework"
)

// path is one way to the same kind of object.
type path struct {
	key, name  string
	client     dynamic.Interface
	gvr        schema.GroupVersionResource
	apiVersion string
}

type bench struct {
	c     *framework.Cluster
	sz    sizes
	kube  kubernetes.Interface
	sg    clientset.Interface // Stargate direct (typed)
	etcd  *clientv3.Client
	paths []path // direct, aggregated, crd
	rows  []row
	// ceiling is etcd's puts/s per client concurrency.
	ceiling map[int]sample
	seq     atomic.Int64
	// finishedJobs is how many Jobs the controller rounds have finished.
	finishedJobs int // MAC and IPv4 of every Hardware are unique
	// seed and rng order the paths in each repetition (pathOrders).
	seed int64
	rng  *rand.Rand
	// versions of the servers, read from their binaries and endpoints (report).
	versions versions
}

const adminUser = "admin"

// seedFlag seeds the order of the paths in each repetition (0: from the clock);
// the seed used is printed, so a run's orders can be repeated.
var seedFlag = flag.Int64("seed", 0, "seed of the order of the paths in each repetition (0: from the clock; the seed used is printed)")

func newBench(ctx context.Context, c *framework.Cluster, sz sizes) (*bench, error) {
	direct := c.RESTConfig(adminUser, c.StargatePort)
	aggregated := c.RESTConfig(adminUser, 0)
	b := &bench{c: c, sz: sz, seed: *seedFlag}
	if b.seed == 0 {
		b.seed = time.Now().UnixNano()
	}
	b.rng = rand.New(rand.NewSource(b.seed))
	var err error
	if b.kube, err = kubernetes.NewForConfig(aggregated); err != nil {
		return nil, err
	}
	if b.sg, err = clientset.NewForConfig(direct); err != nil {
		return nil, err
	}
	if b.etcd, err = clientv3.New(clientv3.Config{Endpoints: []string{c.EtcdURL}, DialTimeout: 10 * time.Second}); err != nil {
		return nil, err
	}
	dDirect, err := dynamic.NewForConfig(direct)
	if err != nil {
		return nil, err
	}
	dAgg, err := dynamic.NewForConfig(aggregated)
	if err != nil {
		return nil, err
	}
	sgGVR := schema.GroupVersionResource{Group: "stargate.io", Version: "v1alpha1", Resource: "hardwares"}
	crdGVR := schema.GroupVersionResource{Group: "crd.stargate.io", Version: "v1alpha1", Resource: "hardwares"}
	b.paths = []path{
		{key: "a", name: "Stargate direct", client: dDirect, gvr: sgGVR, apiVersion: "stargate.io/v1alpha1"},
		{key: "b", name: "Stargate via aggregator", client: dAgg, gvr: sgGVR, apiVersion: "stargate.io/v1alpha1"},
		{key: "c", name: "CRD on kube-apiserver", client: dAgg, gvr: crdGVR, apiVersion: "crd.stargate.io/v1alpha1"},
	}
	if err := b.installCRD(ctx, dAgg); err != nil {
		return nil, fmt.Errorf("installing the CRD: %w", err)
	}
	return b, nil
}

func (b *bench) add(r row) {
	b.rows = append(b.rows, r)
	fmt.Printf("  %s: %s\n", r.name, strings.Join(r.cells()[1:], " "))
}

// sectionKeys name the sections for -sections, in the order they run.
var sectionKeys = []string{"etcd", "creates", "lists", "controller", "campaign", "scale", "dcapi"}

// run runs the sections, all of them or those only (keys of sectionKeys).
func (b *bench) run(ctx context.Context, only map[string]bool) error {
	b.versions = b.readVersions(ctx)
	fmt.Printf("== versions: %s\n== path orders seeded with %d (repeat with -seed %d)\n", b.versions, b.seed, b.seed)
	steps := []struct {
		key, name string
		run       func(context.Context) error
	}{
		{"etcd", "etcd ceiling", b.etcdCeiling},
		{"creates", "create throughput and CPU", b.creates},
		{"lists", "list and watch", b.listAndWatch},
		{"controller", "controller", b.controller},
		// Before scale, which restarts Stargate on a fleet of its own and
		// adds a second replica.
		{"campaign", "campaign", b.campaign},
		{"scale", "scale", b.scale},
		// Last: it leaves its Hardware and finished Jobs behind.
		{"dcapi", "datacenter API load", b.datacenterRequests},
	}
	for _, s := range steps {
		if only != nil && !only[s.key] {
			continue
		}
		start := time.Now()
		fmt.Printf("== %s\n", s.name)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Printf("   (%s)\n", time.Since(start).Round(time.Second))
	}
	return nil
}

func (b *bench) ensureNamespace(ctx context.Context, name string) error {
	_, err := b.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// hardware is a Hardware of about size bytes in JSON, with a MAC and IPv4 of
// its own (Stargate refuses duplicates; the CRD takes the same objects).
func (b *bench) hardware(apiVersion, name string, size int) *unstructured.Unstructured {
	n := b.seq.Add(1)
	mac := fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	ip := fmt.Sprintf("10.%d.%d.%d", (n/62500)%250+1, (n/250)%250, n%250+1)
	obj := map[string]interface{}{
		"apiVersion": apiVersion, "kind": "Hardware",
		"metadata": map[string]interface{}{"name": name},
		"spec": map[string]interface{}{"mac": mac, "ipv4": ip,
			"inventory": map[string]interface{}{"sku": "GPU-8xH100", "location": "rack-5-slot-12"}},
	}
	raw, _ := json.Marshal(obj)
	if pad := size - len(raw) - 60; pad > 0 {
		obj["metadata"].(map[string]interface{})["annotations"] = map[string]interface{}{"bench.stargate.io/pad": strings.Repeat("x", pad)}
	}
	return &unstructured.Unstructured{Object: obj}
}

// createMany creates n Hardware in ns at the given concurrency and returns
// the creates per second.
func (b *bench) createMany(ctx context.Context, p path, ns string, n, concurrency, size int) (float64, error) {
	objs := make([]*unstructured.Unstructured, n)
	for i := range objs {
		objs[i] = b.hardware(p.apiVersion, fmt.Sprintf("hw-%06d", i), size)
	}
	start := time.Now()
	err := framework.FanOut(ctx, n, concurrency, func(i int) error {
		if _, err := p.client.Resource(p.gvr).Namespace(ns).Create(ctx, objs[i], metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("%s create: %w", p.name, err)
		}
		return nil
	})
	return float64(n) / time.Since(start).Seconds(), err
}

// pathOrders is, for each of reps repetitions, an order of the paths (indices
// into b.paths) so that no path always runs first or after the same one: each
// repetition takes the order that has been first least often and repeats the
// fewest neighbour pairs so far, ties broken by the seeded generator.
func (b *bench) pathOrders(reps int) [][]int {
	var perms [][]int
	var permute func(prefix []int, rest []int)
	permute = func(prefix, rest []int) {
		if len(rest) == 0 {
			perms = append(perms, prefix)
			return
		}
		for i := range rest {
			next := append(append([]int(nil), rest[:i]...), rest[i+1:]...)
			permute(append(append([]int(nil), prefix...), rest[i]), next)
		}
	}
	all := make([]int, len(b.paths))
	for i := range all {
		all[i] = i
	}
	permute(nil, all)
	first, after := map[int]int{}, map[[2]int]int{}
	out := make([][]int, 0, reps)
	for range reps {
		var best []int
		bestCost := 0
		for _, k := range b.rng.Perm(len(perms)) {
			p := perms[k]
			cost := first[p[0]] * len(p) * len(p) // running first again weighs most
			for i := 1; i < len(p); i++ {
				cost += after[[2]int{p[i-1], p[i]}]
			}
			if best == nil || cost < bestCost {
				best, bestCost = p, cost
			}
		}
		first[best[0]]++
		for i := 1; i < len(best); i++ {
			after[[2]int{best[i-1], best[i]}]++
		}
		out = append(out, best)
	}
	return out
}

// orderNames is orders as path keys, "abc cab bca".
func (b *bench) orderNames(orders [][]int) string {
	var s []string
	for _, o := range orders {
		var k string
		for _, pi := range o {
			k += b.paths[pi].key
		}
		s = append(s, k)
	}
	return strings.Join(s, " ")
}

// cpu is the CPU seconds used so far by the servers.
type cpu struct{ stargate, kube, etcd float64 }

// total is the CPU of every server process together.
func (c cpu) total() float64 { return c.stargate + c.kube + c.etcd }

func (b *bench) cpuNow() cpu {
	return cpu{stargate: framework.CPUSeconds(b.c.PID("stargate-apiserver")), kube: framework.CPUSeconds(b.c.PID("kube-apiserver")), etcd: framework.CPUSeconds(b.c.PID("etcd"))}
}

func (c cpu) since(before cpu) cpu {
	return cpu{stargate: c.stargate - before.stargate, kube: c.kube - before.kube, etcd: c.etcd - before.etcd}
}
