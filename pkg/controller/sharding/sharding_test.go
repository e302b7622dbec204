package sharding

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/component-base/metrics/testutil"

	"stargate.io/stargate/pkg/embeddedetcd"
)

const (
	testTTL    = 2 * time.Second
	testSettle = 500 * time.Millisecond
	testPrefix = "/test/controllers"
)

func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	etcd, err := embeddedetcd.Start(t.TempDir(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// world watches every replica's acquires: who drives each namespace, whether
// two ever overlap, and each drive's "acts" (a successful Leading check
// followed by a recorded action, as a controller does before a submit).
type world struct {
	t      *testing.T
	client *clientv3.Client
	nss    []string

	mu         sync.Mutex
	active     map[string]map[string]int // ns -> identity -> acquires running
	overlaps   []string
	acquires   map[string]int // ns -> acquires started
	seq        int64
	drives     []*drive
	lastOwned  map[string]time.Time // ns -> last instant it had a driver
	longestGap time.Duration
}

// drive is one acquire call; first and last are the sequence numbers of its
// first and last act.
type drive struct {
	ns, id      string
	first, last int64
}

type replica struct {
	id     string
	s      *Sharder
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	paused bool
	resume chan struct{}
}

func newWorld(t *testing.T, client *clientv3.Client, n int) *world {
	return &world{
		t: t, client: client, nss: testNamespaces(n),
		active: map[string]map[string]int{}, acquires: map[string]int{}, lastOwned: map[string]time.Time{},
	}
}

func (w *world) newReplica(id string) *replica {
	r := &replica{id: id, resume: make(chan struct{})}
	s, err := New(Config{
		Client: w.client, Prefix: testPrefix, Identity: id, TTL: testTTL,
		Settle: testSettle, RetryPeriod: 200 * time.Millisecond,
		Ready: r.ready,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	r.s = s
	for _, ns := range w.nss {
		s.Want(ns)
		s.Want(ns) // idempotent
	}
	return r
}

// ready stands for the caches filling; a paused replica's never do, so it
// stays out until resumed.
func (r *replica) ready(ctx context.Context) bool {
	r.mu.Lock()
	paused, resume := r.paused, r.resume
	r.mu.Unlock()
	if !paused {
		return true
	}
	select {
	case <-resume:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *replica) pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paused, r.resume = true, make(chan struct{})
}

func (r *replica) unpause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paused = false
	close(r.resume)
}

func (w *world) start(r *replica) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		r.s.Run(ctx, func(ctx context.Context, ns string) { w.acquire(ctx, r, ns) })
	}()
}

func (w *world) stop(r *replica) {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		w.t.Fatalf("%s: Run did not return within 10s of its context ending", r.id)
	}
}

// acquire is the test's controller: it checks its lease, then acts every
// 20 ms after checking again, until told to stop.
func (w *world) acquire(ctx context.Context, r *replica, ns string) {
	if err := r.s.Leading(ctx, ns); err != nil {
		<-ctx.Done() // a stale win: never act on it
		return
	}
	d := &drive{ns: ns, id: r.id}
	w.mu.Lock()
	if w.active[ns] == nil {
		w.active[ns] = map[string]int{}
	}
	for other, n := range w.active[ns] {
		if n > 0 {
			w.overlaps = append(w.overlaps, fmt.Sprintf("%s acquired %s while %s drove it", r.id, ns, other))
		}
	}
	w.active[ns][r.id]++
	w.acquires[ns]++
	w.drives = append(w.drives, d)
	w.mu.Unlock()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.mu.Lock()
			w.active[ns][r.id]--
			w.mu.Unlock()
			return
		case <-tick.C:
			if err := r.s.Leading(ctx, ns); err != nil {
				continue
			}
			w.mu.Lock()
			w.seq++
			if d.first == 0 {
				d.first = w.seq
			}
			d.last = w.seq
			w.mu.Unlock()
		}
	}
}

// drivers returns, per namespace, the replicas whose acquire runs now.
func (w *world) drivers() map[string][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]string{}
	for _, ns := range w.nss {
		for id, n := range w.active[ns] {
			if n > 0 {
				out[ns] = append(out[ns], id)
			}
		}
	}
	return out
}

// sample checks, every 10 ms until ctx ends, that no namespace has two
// drivers and how long any went without one.
func (w *world) sample(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		drivers := w.drivers()
		w.mu.Lock()
		for _, ns := range w.nss {
			switch ids := drivers[ns]; {
			case len(ids) > 1:
				w.overlaps = append(w.overlaps, fmt.Sprintf("sampled %s driven by %v at once", ns, ids))
			case len(ids) == 1:
				if last, ok := w.lastOwned[ns]; ok {
					w.longestGap = max(w.longestGap, now.Sub(last))
				}
				w.lastOwned[ns] = now
			}
		}
		w.mu.Unlock()
	}
}

// awaitAssignment waits until each namespace is driven by exactly its
// rendezvous owner among members, and returns how long that took.
func (w *world) awaitAssignment(members []string, within time.Duration) time.Duration {
	w.t.Helper()
	start := time.Now()
	var last map[string][]string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, within, true, func(context.Context) (bool, error) {
		last = w.drivers()
		for _, ns := range w.nss {
			if ids := last[ns]; len(ids) != 1 || ids[0] != owner(ns, members) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		w.t.Fatalf("namespaces not driven by their rendezvous owners among %v within %s: %v", members, within, last)
	}
	return time.Since(start)
}

func (w *world) acquireCounts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.acquires)
}

// moved lists the namespaces acquired again since before.
func (w *world) moved(before map[string]int) []string {
	var out []string
	for ns, n := range w.acquireCounts() {
		if n != before[ns] {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

func assignedTo(nss []string, members []string, id string) []string {
	var out []string
	for _, ns := range nss {
		if owner(ns, members) == id {
			out = append(out, ns)
		}
	}
	return out
}

func (w *world) checkNoOverlaps() {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range w.overlaps {
		w.t.Error(o)
	}
	// A replica's acts on a namespace never interleave with another's: once
	// a new driver acted, no earlier one acts again.
	byNS := map[string][]*drive{}
	for _, d := range w.drives {
		if d.first != 0 {
			byNS[d.ns] = append(byNS[d.ns], d)
		}
	}
	for ns, ds := range byNS {
		slices.SortFunc(ds, func(a, b *drive) int { return int(a.first - b.first) })
		for i := 1; i < len(ds); i++ {
			if ds[i].first <= ds[i-1].last {
				w.t.Errorf("%s: %s acted (from act %d) before %s's last act (%d)", ns, ds[i].id, ds[i].first, ds[i-1].id, ds[i-1].last)
			}
		}
	}
}

func TestDatacentersSpreadOverReplicasAndMoveOnlyWhenTheyMust(t *testing.T) {
	client := startEtcd(t)
	w := newWorld(t, client, 20)
	sampleCtx, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() { defer close(sampled); w.sample(sampleCtx) }()

	a, b, c := w.newReplica("a"), w.newReplica("b"), w.newReplica("c")
	for _, r := range []*replica{a, b, c} {
		w.start(r)
	}
	abc := []string{"a", "b", "c"}
	took := w.awaitAssignment(abc, 15*time.Second)
	spread := map[string]int{}
	for _, r := range []*replica{a, b, c} {
		owned := r.s.Owners()
		spread[r.id] = len(owned)
		if want := assignedTo(w.nss, abc, r.id); !slices.Equal(owned, want) {
			t.Errorf("%s.Owners() = %v, want %v", r.id, owned, want)
		}
		for _, ns := range owned {
			if !r.s.Owns(ns) {
				t.Errorf("%s.Owns(%s) = false for a namespace it drives", r.id, ns)
			}
			if err := r.s.Leading(context.Background(), ns); err != nil {
				t.Errorf("%s.Leading(%s) = %v for a namespace it drives", r.id, ns, err)
			}
		}
		for _, ns := range w.nss {
			if owner(ns, abc) != r.id {
				if r.s.Owns(ns) {
					t.Errorf("%s.Owns(%s) = true for a namespace it does not drive", r.id, ns)
				}
				if err := r.s.Leading(context.Background(), ns); !errors.Is(err, ErrNotDriving) {
					t.Errorf("%s.Leading(%s) = %v for a namespace it does not drive, want ErrNotDriving", r.id, ns, err)
				}
			}
		}
	}
	for id, n := range spread {
		if n < 3 {
			t.Errorf("%s drives %d of 20 namespaces, want a fair share: %v", id, n, spread)
		}
	}
	t.Logf("3 replicas drive 20 namespaces after %s: %v", took.Round(time.Millisecond), spread)

	t.Run("a stopped replica's namespaces move, and only those", func(t *testing.T) {
		before := w.acquireCounts()
		w.stop(c)
		took := w.awaitAssignment([]string{"a", "b"}, testTTL+testSettle+3*time.Second)
		if moved, want := w.moved(before), assignedTo(w.nss, abc, "c"); !slices.Equal(moved, want) {
			t.Errorf("moved %v when c stopped, want c's namespaces %v", moved, want)
		}
		t.Logf("c's namespaces moved within %s", took.Round(time.Millisecond))
	})

	t.Run("a paused replica loses its namespaces, stops, and gets its share back when it returns", func(t *testing.T) {
		ab := []string{"a", "b"}
		bs := assignedTo(w.nss, ab, "b")
		before := w.acquireCounts()
		// b stops renewing: its lease runs out (revoked here, to be quick),
		// and when it rejoins its caches take a while to fill (paused Ready).
		b.pause()
		lease := b.s.currentLease()
		if lease == 0 {
			t.Fatal("b has no session")
		}
		if _, err := client.Revoke(context.Background(), lease); err != nil {
			t.Fatal(err)
		}
		if err := b.s.Leading(context.Background(), bs[0]); !errors.Is(err, ErrNotDriving) {
			t.Errorf("b.Leading(%s) after its lease was lost = %v, want ErrNotDriving", bs[0], err)
		}
		err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, testTTL, true, func(context.Context) (bool, error) {
			for _, ids := range w.drivers() {
				if slices.Contains(ids, "b") {
					return false, nil
				}
			}
			return len(b.s.Owners()) == 0, nil
		})
		if err != nil {
			t.Fatalf("b still drives namespaces %s after losing its lease: %v", testTTL, b.s.Owners())
		}
		took := w.awaitAssignment([]string{"a"}, testTTL+testSettle+3*time.Second)
		if moved := w.moved(before); !slices.Equal(moved, bs) {
			t.Errorf("moved %v when b's lease was lost, want b's namespaces %v", moved, bs)
		}
		t.Logf("b's namespaces moved to a within %s of its lease loss", took.Round(time.Millisecond))

		before = w.acquireCounts()
		b.unpause()
		took = w.awaitAssignment(ab, testTTL+testSettle+3*time.Second)
		if moved := w.moved(before); !slices.Equal(moved, bs) {
			t.Errorf("moved %v when b came back, want b's share %v", moved, bs)
		}
		t.Logf("b got its share back within %s", took.Round(time.Millisecond))
	})

	t.Run("a new replica takes about 1/N, none driven twice", func(t *testing.T) {
		w.start(c) // c returns, with the same Sharder
		w.awaitAssignment(abc, testSettle+5*time.Second)
		before := w.acquireCounts()
		d := w.newReplica("d")
		w.start(d)
		abcd := []string{"a", "b", "c", "d"}
		took := w.awaitAssignment(abcd, testSettle+5*time.Second)
		moved, want := w.moved(before), assignedTo(w.nss, abcd, "d")
		if !slices.Equal(moved, want) {
			t.Errorf("moved %v when d joined, want only the namespaces d now owns %v", moved, want)
		}
		if len(moved) < 2 || len(moved) > 9 {
			t.Errorf("d took %d of 20 namespaces, want about 5", len(moved))
		}
		t.Logf("d took %d namespaces within %s", len(moved), took.Round(time.Millisecond))
		defer w.stop(d)
	})

	stopSampling()
	<-sampled
	for _, r := range []*replica{a, b, c} {
		w.stop(r)
	}
	w.checkNoOverlaps()
	w.mu.Lock()
	if limit := testTTL + testSettle + time.Second; w.longestGap > limit {
		t.Errorf("a namespace went %s without a driver, want at most %s (a handoff)", w.longestGap, limit)
	}
	t.Logf("longest handoff gap sampled: %s", w.longestGap.Round(time.Millisecond))
	w.mu.Unlock()
	if drivers := w.drivers(); len(drivers) != 0 {
		t.Errorf("namespaces still driven after every replica stopped: %v", drivers)
	}
	checkEtcdEmpty(t, client)
	checkNoGoroutinesLeft(t)
}

// TestLostSessionEndsEveryShard: the lease of a replica that drives every
// namespace vanishes; its acquire contexts end without any Leading call (its
// member watch or its keep-alive notices), and it rejoins and drives them
// again. A member key deleted by hand is put back; a forgotten namespace is
// released.
func TestLostSessionEndsEveryShard(t *testing.T) {
	client := startEtcd(t)
	RegisterMetrics()
	w := newWorld(t, client, 5)
	s, err := New(Config{Client: client, Prefix: testPrefix, Identity: "solo", TTL: testTTL, Settle: 100 * time.Millisecond, RetryPeriod: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range w.nss {
		s.Want(ns)
	}
	var mu sync.Mutex
	running := map[string]int{}
	acquired := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, func(ctx context.Context, ns string) {
			mu.Lock()
			running[ns]++
			acquired[ns]++
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			running[ns]--
			mu.Unlock()
		})
	}()
	count := func(m map[string]int) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, v := range m {
			n += v
		}
		return n
	}
	poll := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, within, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("%s: not within %s", what, within)
		}
	}
	poll("all namespaces driven", 10*time.Second, func() bool { return count(running) == 5 && len(s.Owners()) == 5 })
	if v, err := testutil.GetGaugeMetricValue(DatacenterDriven.WithLabelValues(w.nss[0])); err != nil || v != 1 {
		t.Errorf("stargate_datacenter_driven{datacenter=%q} = %v (%v), want 1", w.nss[0], v, err)
	}

	// A member key deleted by hand comes back; nothing else changes.
	lease := s.currentLease()
	memberKey := testPrefix + "/members/solo"
	if _, err := client.Delete(context.Background(), memberKey); err != nil {
		t.Fatal(err)
	}
	poll("the member key put back", 5*time.Second, func() bool {
		resp, err := client.Get(context.Background(), memberKey)
		return err == nil && len(resp.Kvs) == 1 && clientv3.LeaseID(resp.Kvs[0].Lease) == lease
	})
	time.Sleep(300 * time.Millisecond) // past Settle: nothing moves
	if n := count(acquired); n != 5 || s.currentLease() != lease {
		t.Errorf("after the member key was put back: %d acquires (want 5), lease %x (want %x)", n, s.currentLease(), lease)
	}

	if _, err := client.Revoke(context.Background(), lease); err != nil {
		t.Fatal(err)
	}
	poll("every acquire context ended", testTTL, func() bool { return count(running) == 0 })
	if err := s.Leading(context.Background(), w.nss[0]); !errors.Is(err, ErrNotDriving) {
		t.Errorf("Leading after the lease was lost = %v, want ErrNotDriving", err)
	}
	poll("all namespaces driven again", 10*time.Second, func() bool { return count(running) == 5 && count(acquired) == 10 })

	s.Forget(w.nss[0])
	poll("a forgotten namespace released", 5*time.Second, func() bool { return count(running) == 4 && !s.Owns(w.nss[0]) })

	cancel()
	<-done
	if n := count(running); n != 0 {
		t.Errorf("%d acquires still running after Run returned", n)
	}
	if v, err := testutil.GetGaugeMetricValue(DatacenterDriven.WithLabelValues(w.nss[1])); err != nil || v != 0 {
		// WithLabelValues made a fresh series (0): the one that said 1 is gone.
		t.Errorf("stargate_datacenter_driven{datacenter=%q} after stop = %v (%v), want the series gone", w.nss[1], v, err)
	}
	checkEtcdEmpty(t, client)
	checkNoGoroutinesLeft(t)
}

// TestHeldKeyIsNeverStolen: a replica that sees itself alone (as one whose
// view of the members lags would) is assigned everything, but a namespace
// whose key another session holds it only waits for in line; it takes it
// once that key goes, and leaves the line for one it is no longer assigned.
func TestHeldKeyIsNeverStolen(t *testing.T) {
	client := startEtcd(t)
	// Another session holds dc-0's and dc-1's keys.
	lease, err := client.Grant(context.Background(), 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"dc-0", "dc-1"} {
		if _, err := client.Put(context.Background(), testPrefix+"/datacenters/"+ns+"/holder", "other", clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(Config{Client: client, Prefix: testPrefix, Identity: "lonely", TTL: testTTL, Settle: 100 * time.Millisecond, RetryPeriod: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Want("dc-0")
	s.Want("dc-1")
	var mu sync.Mutex
	var holderGone bool
	acquired := make(chan string, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, func(ctx context.Context, ns string) {
			mu.Lock()
			ok := holderGone && ns == "dc-0"
			mu.Unlock()
			if !ok {
				t.Errorf("acquired %s while another session held it", ns)
			}
			acquired <- ns
			<-ctx.Done()
		})
	}()
	keys := func(ns string) int64 {
		resp, err := client.Get(context.Background(), testPrefix+"/datacenters/"+ns+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatal(what)
		}
	}
	poll("the sharder did not queue for dc-0 and dc-1", func() bool { return keys("dc-0") == 2 && keys("dc-1") == 2 })
	time.Sleep(500 * time.Millisecond) // it must keep waiting
	if s.Owns("dc-0") || s.Owns("dc-1") {
		t.Fatal("the sharder owns a namespace whose key another session holds")
	}

	s.Forget("dc-1")
	poll("the sharder still waits in line for dc-1 after it was no longer wanted", func() bool { return keys("dc-1") == 1 })

	mu.Lock()
	holderGone = true
	mu.Unlock()
	if _, err := client.Delete(context.Background(), testPrefix+"/datacenters/dc-0/holder"); err != nil {
		t.Fatal(err)
	}
	select {
	case ns := <-acquired:
		if ns != "dc-0" {
			t.Errorf("acquired %s, want dc-0", ns)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the sharder did not take dc-0 once its holder released it")
	}
	cancel()
	<-done
	if _, err := client.Revoke(context.Background(), lease.ID); err != nil {
		t.Fatal(err)
	}
	checkEtcdEmpty(t, client)
}

func TestNewRejectsBadConfig(t *testing.T) {
	client := &clientv3.Client{}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no client", Config{Prefix: "/p", Identity: "a", TTL: time.Second}},
		{"no prefix", Config{Client: client, Prefix: "/", Identity: "a", TTL: time.Second}},
		{"no identity", Config{Client: client, Prefix: "/p", TTL: time.Second}},
		{"slash in identity", Config{Client: client, Prefix: "/p", Identity: "a/b", TTL: time.Second}},
		{"no TTL", Config{Client: client, Prefix: "/p", Identity: "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

func checkEtcdEmpty(t *testing.T, client *clientv3.Client) {
	t.Helper()
	resp, err := client.Get(context.Background(), testPrefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		t.Errorf("key left in etcd after every replica stopped: %s", kv.Key)
	}
}

// checkNoGoroutinesLeft waits briefly for every goroutine of this package
// (other than the tests') to end.
func checkNoGoroutinesLeft(t *testing.T) {
	t.Helper()
	var left []string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = nil
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "pkg/controller/sharding.(*term)") || strings.Contains(g, "pkg/controller/sharding.(*Sharder)") {
				left = append(left, g)
			}
		}
		return len(left) == 0, nil
	})
	if err != nil {
		t.Errorf("%d goroutines of the sharder left running:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
