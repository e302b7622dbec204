//go:build faults

package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/test/framework"
)

const (
	shardCount = 20
	hwPerShard = 20
	// jobEvery is the pace of Job creates, round robin over the
	// datacenters: one Job per datacenter every shardCount×jobEvery (2 s).
	jobEvery = 100 * time.Millisecond
	// replicaLease is the framework's --leader-elect-lease-duration.
	replicaLease = 3 * time.Second
	// settleMargin, after an event plus the lease, covers the replicas'
	// membership settle (1 s), a campaign, and a resumed replica's retry
	// pause before it rejoins (2 s ± 50%).
	settleMargin = 5 * time.Second
	// observeFor is how long each event is watched before the next.
	observeFor = 16 * time.Second
	pauseFor   = 8 * time.Second
	// resumeBound: after each event, every datacenter finishes a Job
	// created after it within lease + settle + a Job's own time.
	resumeBound = 15 * time.Second
	// staleGrace is how long a replica SIGCONTed after its lease expired
	// may still say it drives a datacenter another replica holds.
	staleGrace   = 5 * time.Second
	samplePeriod = 200 * time.Millisecond
	// shardKeyPrefix holds each datacenter's election keys (package
	// sharding under the server's etcd prefix): the oldest key's holder
	// drives it.
	shardKeyPrefix = "/registry/stargate.io/controllers/datacenters/"
	drivenMetric   = `stargate_datacenter_driven{datacenter="`
)

// TestDatacentersOverReplicas spreads 20 Datacenters over three replicas on
// one etcd while Jobs flow in every one of them, then SIGKILLs a replica,
// SIGSTOPs another past its lease and SIGCONTs it, and adds a fourth. Every
// 200 ms a sampler reads which replicas say they drive each datacenter
// (stargate_datacenter_driven on the /metrics of every replica that is
// running) and who holds its election key in etcd. No two running replicas
// may drive one datacenter at once, except that the resumed replica may
// still say so for a few seconds (until it notices its lease is gone; it
// does not act meanwhile); from lease + settle after each event until the
// next, every datacenter has exactly one driver, the holder of its key; after
// each event every datacenter finishes a Job created after it within 15 s;
// the fourth replica takes datacenters only for itself; and the ledgers show
// every Job run once.
func TestDatacentersOverReplicas(t *testing.T) {
	shards := createShards(t)
	etcd := etcdClient(t)
	f := &fleet{byName: map[string]*replica{}}
	if err := f.add("stargate-apiserver", env.StargatePort); err != nil {
		t.Fatal(err)
	}
	startReplicas(t, f, killedReplica, pausedReplica)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := &sampler{fleet: f, etcd: etcd, shards: shards}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		s.run(sampleCtx)
	}()
	defer func() { stopSampling(); <-sampling }()
	spread := waitSpread(t, s, f.names())

	flow := &jobFlow{sent: map[string]time.Time{}, finished: map[string]time.Time{}}
	if err := flow.watch(ctx); err != nil {
		t.Fatal(err)
	}
	stopCreating := make(chan struct{})
	creating := make(chan struct{})
	go func() {
		defer close(creating)
		flow.create(ctx, stopCreating, shards)
	}()
	time.Sleep(8 * time.Second)
	events, newHardware := disrupt(t, f, shards)
	events = append([]event{{name: "baseline", at: spread, steady: spread}}, events...)
	close(stopCreating)
	<-creating
	end := time.Now()
	stopSampling()
	<-sampling

	o := waitAndJudge(t, sg, "replicas", flow.acknowledged(), 3*time.Minute)
	if o.Failed != 0 {
		t.Errorf("%d Jobs failed (%s); moving a datacenter between replicas is no reason to fail a Job", o.Failed, reasons(o.FailedReasons))
	}
	samples := s.all()
	d := judgeDrivers(t, samples, events, end, shards, pausedReplica)
	resumes := judgeResumes(t, flow, shards, events[1:])
	took := judgeAdded(t, samples, events[len(events)-1], shards, addedReplica)
	checkDrivenBy(t, etcd, f, shards)
	notLookedUp := checkLookedUp(t, newHardware)
	checkResumed(t, d)

	var gaps, resumed []string
	worst := time.Duration(0)
	for _, ev := range events[1:] {
		gap := d.gaps[ev.name].Round(100 * time.Millisecond).String()
		if d.gaps[ev.name] == 0 {
			gap = "none sampled" // every sample, 200 ms apart, saw a driver
		}
		gaps = append(gaps, fmt.Sprintf("%s %s", ev.name, gap))
		resumed = append(resumed, fmt.Sprintf("%s %s", ev.name, resumes[ev.name].Round(100*time.Millisecond)))
		worst = max(worst, resumes[ev.name])
	}
	record(t, row{Fault: "20 datacenters over replicas: one SIGKILLed, one SIGSTOPped 8s past its lease then SIGCONT, a fourth added (3 replicas, lease 3s)",
		Runs: len(events) - 1, Jobs: o.Jobs, Lost: o.Lost, Duplicated: o.Duplicated, Stuck: o.Stuck,
		Recovery: worst.Round(100 * time.Millisecond).String(),
		Note: fmt.Sprintf("%d Succeeded; longest stretch without a driver: %s; a Job created after the event finished in every datacenter within: %s (recovery = worst); "+
			"doubly driven at %d of %d samples; after lease + %s, not exactly one driver (the key's holder) at %d of %d datacenter-samples; "+
			"the resumed replica claimed %d datacenters it no longer held, until %s after SIGCONT; the fourth took %d of %d; "+
			"of %d Hardware created right after SIGKILL and SIGSTOP, %d not looked up",
			o.Succeeded, strings.Join(gaps, ", "), strings.Join(resumed, ", "),
			d.doubled, len(samples), settleMargin, d.notOne, d.steadyChecks,
			d.staleShards, d.staleFor.Round(100*time.Millisecond), took, shardCount, len(newHardware), notLookedUp)})
}

// The replicas TestDatacentersOverReplicas starts and what it does to them.
// The first one, stargate-apiserver, is behind the APIService and takes the
// test's requests: it is left alone.
const (
	killedReplica = "stargate-apiserver-2"
	pausedReplica = "stargate-apiserver-3"
	addedReplica  = "stargate-apiserver-4"
)

// disrupt, while Jobs flow, SIGKILLs one replica, SIGSTOPs another past its
// lease and SIGCONTs it, and adds a fourth, watching each for observeFor
// (the pause for pauseFor). Right after the SIGKILL and the SIGSTOP it
// creates a Hardware in every datacenter, which it returns.
func disrupt(t *testing.T, f *fleet, shards []string) ([]event, []string) {
	t.Helper()
	var events []event
	happened := func(name string, at, settling time.Time) {
		events = append(events, event{name: name, at: at, steady: settling.Add(replicaLease + settleMargin)})
	}
	at := time.Now()
	f.set(killedReplica, dead)
	env.Kill(killedReplica, true)
	happened("SIGKILL", at, at)
	newHardware := createDuringHandoff(t, shards, "kill")
	time.Sleep(time.Until(at.Add(observeFor)))

	at = time.Now()
	f.set(pausedReplica, stopped) // before the signal: no read of it may hang
	if err := env.Signal(pausedReplica, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	happened("SIGSTOP", at, at)
	newHardware = append(newHardware, createDuringHandoff(t, shards, "stop")...)
	time.Sleep(time.Until(at.Add(pauseFor)))
	if err := env.Signal(pausedReplica, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	at = time.Now()
	f.set(pausedReplica, running)
	happened("SIGCONT", at, at)
	time.Sleep(observeFor)

	at = time.Now()
	startReplicas(t, f, addedReplica)
	happened("add", at, time.Now()) // it joins once ready
	time.Sleep(observeFor)
	return events, newHardware
}

// checkResumed checks that the resumed replica said so in its log, and
// drives datacenters again once they have settled.
func checkResumed(t *testing.T, d driverFindings) {
	t.Helper()
	if logs, err := env.Logs(); err != nil {
		t.Error(err)
	} else if !strings.Contains(string(logs[pausedReplica]), "etcd lease expired or was revoked") {
		t.Errorf("the paused %s never logged that its etcd lease was gone", pausedReplica)
	} else {
		t.Logf("%s, resumed, found its election key gone before acting %d times (Leading)", pausedReplica,
			strings.Count(string(logs[pausedReplica]), "election key for the datacenter is gone from etcd"))
	}
	if d.share["SIGCONT"][pausedReplica] == 0 {
		t.Errorf("%s drove no datacenter after it was resumed and the datacenters settled: %v", pausedReplica, d.share["SIGCONT"])
	}
}

// createShards creates the Datacenters shard-00 to shard-19, each in a
// namespace of its own, at dc-west's and dc-east's mocks in turn with a copy
// of the mock's token, and hwPerShard Hardware in each.
func createShards(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var shards []string
	var namespaces strings.Builder
	for i := range shardCount {
		ns := fmt.Sprintf("shard-%02d", i)
		shards = append(shards, ns)
		fmt.Fprintf(&namespaces, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\n", ns)
	}
	if out, err := env.KubectlIn("admin", namespaces.String(), "apply", "-f", "-"); err != nil {
		t.Fatalf("creating the namespaces: %v: %s", err, out)
	}
	for i, ns := range shards {
		mock := datacenters[i%2]
		if err := os.WriteFile(filepath.Join(env.CredsDir, ns), []byte(env.Token(mock)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := sg.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: ns},
			Spec:       v1alpha1.DatacenterSpec{Endpoint: env.MockDC[mock], MaxConcurrentJobs: ptr.To[int32](100)},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err := framework.FanOut(ctx, shardCount*hwPerShard, 16, func(i int) error {
		ns := shards[i/hwPerShard]
		_, err := sg.StargateV1alpha1().Hardwares(ns).Create(ctx, hardware(fmt.Sprintf("rp-%02d", i%hwPerShard)), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("creating Hardware: %v", err)
	}
	return shards
}

// replicaAdder is what startReplicas adds the replicas it started to: a
// fleet here, campaignReplicas in TestCampaignDriverHandoff.
type replicaAdder interface {
	add(name string, port int) error
}

// startReplicas starts more replicas at once, adds them to f, and stops them
// (SIGTERM) when the test ends.
func startReplicas(t *testing.T, f replicaAdder, names ...string) {
	t.Helper()
	ports := make([]int, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		t.Cleanup(func() {
			_ = env.Signal(name, syscall.SIGCONT) // if the test stopped while it was paused
			env.Kill(name, false)
		})
		wg.Go(func() { ports[i], errs[i] = env.StartReplica(name) })
	}
	wg.Wait()
	for i, name := range names {
		if errs[i] != nil {
			t.Fatalf("starting %s: %v", name, errs[i])
		}
		if err := f.add(name, ports[i]); err != nil {
			t.Fatal(err)
		}
	}
}

type replicaState int

const (
	running replicaState = iota
	stopped              // SIGSTOPped: it cannot answer
	dead
)

// replica is one stargate-apiserver process of the test.
type replica struct {
	name   string
	pid    int
	client clientset.Interface
	state  replicaState
}

// fleet is the replicas and what the test has done to them.
type fleet struct {
	mu     sync.Mutex
	byName map[string]*replica
}

func (f *fleet) add(name string, port int) error {
	c, err := clientset.NewForConfig(env.RESTConfig("admin", port))
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byName[name] = &replica{name: name, pid: env.PID(name), client: c}
	return nil
}

func (f *fleet) set(name string, state replicaState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byName[name].state = state
}

func (f *fleet) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for name := range f.byName {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// running is a copy of every replica that is running now.
func (f *fleet) running() []replica {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []replica
	for _, r := range f.byName {
		if r.state == running {
			out = append(out, *r)
		}
	}
	return out
}

// named is the replica whose sharding identity (host_pid_random) this is,
// or the identity itself if no replica of the test has that PID.
func (f *fleet) named(identity string) string {
	parts := strings.Split(identity, "_")
	if len(parts) < 3 {
		return identity
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil {
		return identity
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.byName {
		if r.pid == pid {
			return r.name
		}
	}
	return identity
}

// sample is what the sampler saw at one moment.
type sample struct {
	at time.Time
	// complete: every running replica answered, and etcd did.
	complete bool
	// claims: datacenter -> the replicas whose /metrics say they drive it.
	claims map[string][]string
	// confirmed: the datacenters two or more replicas claimed, still
	// claimed by two or more when those replicas were asked again at once
	// (one reading of each can straddle a clean handoff).
	confirmed map[string][]string
	// holder: datacenter -> the replica holding its oldest election key,
	// "" if it has none.
	holder map[string]string
	// answered: the replicas whose /metrics answered.
	answered []string
}

// sampler reads, every samplePeriod, who drives each datacenter.
type sampler struct {
	fleet  *fleet
	etcd   *clientv3.Client
	shards []string

	mu      sync.Mutex
	samples []sample
}

func (s *sampler) run(ctx context.Context) {
	tick := time.NewTicker(samplePeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		smp := s.take(ctx)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.samples = append(s.samples, smp)
		s.mu.Unlock()
	}
}

func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

func (s *sampler) last() (sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return sample{}, false
	}
	return s.samples[len(s.samples)-1], true
}

// take reads every running replica's claims, then etcd's election keys.
func (s *sampler) take(ctx context.Context) sample {
	smp := sample{at: time.Now(), confirmed: map[string][]string{}}
	replicas := s.fleet.running()
	smp.claims, smp.answered = readClaims(ctx, replicas)
	holder, err := s.readHolders(ctx)
	smp.holder, smp.complete = holder, len(smp.answered) == len(replicas) && err == nil
	for ns, names := range smp.claims {
		if len(names) < 2 {
			continue
		}
		again, _ := readClaims(ctx, slices.DeleteFunc(slices.Clone(replicas), func(r replica) bool { return !slices.Contains(names, r.name) }))
		if len(again[ns]) >= 2 {
			smp.confirmed[ns] = again[ns]
		}
	}
	return smp
}

// readClaims asks each replica's /metrics, at once, which datacenters it
// drives; answered is those that answered.
func readClaims(ctx context.Context, replicas []replica) (map[string][]string, []string) {
	driven := make([][]string, len(replicas))
	errs := make([]error, len(replicas))
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() { driven[i], errs[i] = drivenBy(ctx, r.client) })
	}
	wg.Wait()
	claims := map[string][]string{}
	var answered []string
	for i, r := range replicas {
		if errs[i] == nil {
			answered = append(answered, r.name)
		}
		for _, ns := range driven[i] {
			claims[ns] = append(claims[ns], r.name)
		}
	}
	for _, names := range claims {
		slices.Sort(names)
	}
	return claims, answered
}

// drivenBy is the datacenters a replica's /metrics says it drives.
func drivenBy(ctx context.Context, c clientset.Interface) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	raw, err := c.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, drivenMetric); ok {
			if ns, value, ok := strings.Cut(rest, `"} `); ok && strings.TrimSpace(value) == "1" {
				out = append(out, ns)
			}
		}
	}
	return out, nil
}

// readHolders reads every datacenter's election keys and names, for each,
// the replica holding the oldest.
func (s *sampler) readHolders(ctx context.Context) (map[string]string, error) {
	holders, err := electionHolders(ctx, s.etcd)
	if err != nil {
		return nil, err
	}
	for ns, identity := range holders {
		holders[ns] = s.fleet.named(identity)
	}
	return holders, nil
}

// electionHolders maps each datacenter to the identity that holds its
// oldest election key.
func electionHolders(ctx context.Context, etcd *clientv3.Client) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := etcd.Get(ctx, shardKeyPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	holders := map[string]string{}
	oldest := map[string]int64{}
	for _, kv := range resp.Kvs {
		ns, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), shardKeyPrefix), "/")
		if rev, ok := oldest[ns]; !ok || kv.CreateRevision < rev {
			oldest[ns], holders[ns] = kv.CreateRevision, string(kv.Value)
		}
	}
	return holders, nil
}

// waitSpread waits until a complete sample shows every datacenter driven by
// exactly one replica, its key's holder, and every replica driving at least
// one; it returns when.
func waitSpread(t *testing.T, s *sampler, replicas []string) time.Time {
	t.Helper()
	var at time.Time
	var seen sample
	err := wait.PollUntilContextTimeout(context.Background(), samplePeriod, 90*time.Second, false, func(context.Context) (bool, error) {
		smp, ok := s.last()
		if !ok || !smp.complete {
			return false, nil
		}
		seen = smp
		share := map[string]int{}
		for _, ns := range s.shards {
			if len(smp.claims[ns]) != 1 || smp.claims[ns][0] != smp.holder[ns] {
				return false, nil
			}
			share[smp.claims[ns][0]]++
		}
		for _, r := range replicas {
			if share[r] == 0 {
				return false, nil
			}
		}
		at = smp.at
		t.Logf("datacenters per replica: %v", share)
		return true, nil
	})
	if err != nil {
		t.Fatalf("the datacenters were not spread over %v, one driver each: last sample claims %v, key holders %v", replicas, seen.claims, seen.holder)
	}
	return at
}

// event is something the test did to the replicas.
type event struct {
	name string
	at   time.Time
	// steady: from then until the next event, every datacenter must have
	// exactly one driver.
	steady time.Time
}

// driverFindings is what judgeDrivers found.
type driverFindings struct {
	// gaps: per event, the longest stretch a datacenter had no driver,
	// from the last sample that saw one to the next.
	gaps map[string]time.Duration
	// settled: per event, when (after it) the last datacenter changed
	// drivers before the next event; share: per event, how many
	// datacenters each replica drove at the last sample before the next.
	settled map[string]time.Duration
	share   map[string]map[string]int
	// steadyChecks and notOne: datacenter-samples checked in the steady
	// windows, and those without exactly one driver, its key's holder.
	steadyChecks, notOne int
	// doubled: samples with a datacenter driven by two running replicas,
	// confirmed, not counting the resumed replica within staleGrace.
	doubled int
	// staleShards: datacenters the resumed replica said it drove while
	// another held the key; staleFor: SIGCONT to the last sample showing it.
	staleShards int
	staleFor    time.Duration
}

// judgeDrivers checks the samples against the events (the SIGCONT event
// resumes the replica resumed).
func judgeDrivers(t *testing.T, samples []sample, events []event, end time.Time, shards []string, resumed string) driverFindings {
	t.Helper()
	d := driverFindings{gaps: map[string]time.Duration{}, settled: map[string]time.Duration{}, share: map[string]map[string]int{}}
	incomplete := 0
	for _, smp := range samples {
		if !smp.complete {
			incomplete++
		}
	}
	t.Logf("%d samples, %d incomplete (a replica or etcd did not answer within 2s)", len(samples), incomplete)
	var resumedAt time.Time
	for i, ev := range events {
		until := end
		if i+1 < len(events) {
			until = events[i+1].at
		}
		if ev.name == "SIGCONT" {
			resumedAt = ev.at
			d.staleShards, d.staleFor = staleClaims(t, window(samples, ev.at, until), resumed, ev.at)
		}
		d.gaps[ev.name] = longestGap(t, window(samples, ev.at, until), shards, ev, until)
		d.settled[ev.name], d.share[ev.name] = movesSettled(window(samples, ev.at, until), shards, ev.at)
		t.Logf("%s: the last datacenter moved %s after it; datacenters per replica before the next event: %v",
			ev.name, d.settled[ev.name].Round(time.Millisecond), d.share[ev.name])
		for _, smp := range window(samples, ev.steady, until) {
			if !smp.complete {
				continue
			}
			for _, ns := range shards {
				d.steadyChecks++
				if len(smp.claims[ns]) != 1 || smp.claims[ns][0] != smp.holder[ns] {
					d.notOne++
					if d.notOne <= 10 {
						t.Errorf("%s after %s: %s claimed by %v, its key held by %q; want exactly its holder",
							smp.at.Sub(ev.at).Round(time.Millisecond), ev.name, ns, smp.claims[ns], smp.holder[ns])
					}
				}
			}
		}
	}
	for _, smp := range samples {
		for ns, names := range smp.confirmed {
			if slices.Contains(names, resumed) && !resumedAt.IsZero() && smp.at.After(resumedAt) && smp.at.Sub(resumedAt) <= staleGrace {
				continue // counted by staleClaims
			}
			d.doubled++
			t.Errorf("at %s %s was driven by %v at once", smp.at.Format("15:04:05.000"), ns, names)
		}
	}
	if d.staleFor > staleGrace {
		t.Errorf("%s still said it drove datacenters others held %s after SIGCONT, want <= %s", resumed, d.staleFor, staleGrace)
	}
	return d
}

// movesSettled is how long after from the last datacenter changed drivers
// in samples, and how many datacenters each replica drove at the last one.
func movesSettled(samples []sample, shards []string, from time.Time) (time.Duration, map[string]int) {
	var settled time.Duration
	var prev []string
	share := map[string]int{}
	for _, smp := range samples {
		if !smp.complete {
			continue
		}
		drivers := make([]string, len(shards))
		clear(share)
		for i, ns := range shards {
			drivers[i] = strings.Join(smp.claims[ns], "+")
			share[drivers[i]]++
		}
		if prev != nil && !slices.Equal(prev, drivers) {
			settled = smp.at.Sub(from)
		}
		prev = drivers
	}
	return settled, share
}

// window is the samples taken in [from, to).
func window(samples []sample, from, to time.Time) []sample {
	var out []sample
	for _, smp := range samples {
		if !smp.at.Before(from) && smp.at.Before(to) {
			out = append(out, smp)
		}
	}
	return out
}

// longestGap is, over the datacenters, the longest time between two complete
// samples that saw a driver with only samples seeing none in between (the
// first counted from the event); a datacenter still without a driver at
// until counts to until.
func longestGap(t *testing.T, samples []sample, shards []string, ev event, until time.Time) time.Duration {
	var longest time.Duration
	lastSeen := map[string]time.Time{}
	missing := map[string]bool{}
	for _, smp := range samples {
		if !smp.complete {
			continue
		}
		for _, ns := range shards {
			if len(smp.claims[ns]) == 0 {
				missing[ns] = true
				continue
			}
			if missing[ns] {
				from := ev.at
				if seen, ok := lastSeen[ns]; ok {
					from = seen
				}
				longest = max(longest, smp.at.Sub(from))
			}
			missing[ns], lastSeen[ns] = false, smp.at
		}
	}
	for _, ns := range shards {
		if missing[ns] {
			from, ok := lastSeen[ns]
			if !ok {
				from = ev.at
			}
			t.Errorf("%s had no driver from %s after %s to the next event", ns, from.Sub(ev.at).Round(time.Millisecond), ev.name)
			longest = max(longest, until.Sub(from))
		}
	}
	return longest
}

// staleClaims counts the datacenters the resumed replica said it drove while
// its key was not the oldest, and how long after from it last did.
func staleClaims(t *testing.T, samples []sample, resumed string, from time.Time) (int, time.Duration) {
	shards := map[string]bool{}
	var last time.Duration
	for _, smp := range samples {
		if slices.Contains(smp.answered, resumed) {
			claimed := 0
			for _, names := range smp.claims {
				if slices.Contains(names, resumed) {
					claimed++
				}
			}
			t.Logf("%s first answered %s after SIGCONT, saying it drove %d datacenters", resumed, smp.at.Sub(from).Round(time.Millisecond), claimed)
			break
		}
	}
	for _, smp := range samples {
		for ns, names := range smp.claims {
			if slices.Contains(names, resumed) && smp.holder != nil && smp.holder[ns] != resumed {
				shards[ns] = true
				last = smp.at.Sub(from)
			}
		}
	}
	t.Logf("after SIGCONT, %s said it drove %d datacenters it no longer held, the last %s after", resumed, len(shards), last.Round(time.Millisecond))
	return len(shards), last
}

// judgeAdded compares who drove each datacenter before the replica added
// came with who drives it at the end: only datacenters it took may have
// moved, and it took some. It returns how many it took.
func judgeAdded(t *testing.T, samples []sample, add event, shards []string, added string) int {
	t.Helper()
	var before, after sample
	for _, smp := range samples {
		if smp.complete && smp.at.Before(add.at) {
			before = smp
		}
		if smp.complete && !smp.at.Before(add.steady) {
			after = smp
		}
	}
	if before.claims == nil || after.claims == nil {
		t.Errorf("no complete sample before %s was added, or none after it settled", added)
		return 0
	}
	took := 0
	for _, ns := range shards {
		was, is := before.claims[ns], after.claims[ns]
		switch {
		case len(is) == 1 && is[0] == added:
			took++
		case !slices.Equal(was, is):
			t.Errorf("adding %s moved %s from %v to %v; only datacenters it takes may move", added, ns, was, is)
		}
	}
	t.Logf("%s took %d of %d datacenters", added, took, len(shards))
	if took == 0 {
		t.Errorf("%s took no datacenter", added)
	}
	return took
}

// checkDrivenBy waits until every Datacenter's status.drivenBy names the
// replica holding its election key, a running one.
func checkDrivenBy(t *testing.T, etcd *clientv3.Client, f *fleet, shards []string) {
	t.Helper()
	var problems []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The checks run on their own context: the deadline must not cut the
	// last one short, which says what is wrong.
	err := until(ctx, 500*time.Millisecond, func() bool {
		ctx := context.Background()
		problems = nil
		holders, err := electionHolders(ctx, etcd)
		if err != nil {
			problems = append(problems, err.Error())
			return false
		}
		list, err := sg.StargateV1alpha1().Datacenters().List(ctx, metav1.ListOptions{})
		if err != nil {
			problems = append(problems, err.Error())
			return false
		}
		live := map[string]bool{}
		for _, r := range f.running() {
			live[r.name] = true
		}
		drivenBy := map[string]string{}
		for _, dc := range list.Items {
			drivenBy[dc.Name] = dc.Status.DrivenBy
		}
		for _, ns := range shards {
			if drivenBy[ns] != holders[ns] || !live[f.named(holders[ns])] {
				problems = append(problems, fmt.Sprintf("%s: drivenBy %q, key held by %q", ns, drivenBy[ns], holders[ns]))
			}
		}
		return len(problems) == 0
	})
	if err != nil {
		t.Errorf("Datacenter status.drivenBy does not name the running replica holding the key: %v", problems)
	}
}

// createDuringHandoff creates a Hardware in every datacenter, right after an
// event leaves some without a driver, and returns them (namespace/name).
func createDuringHandoff(t *testing.T, shards []string, tag string) []string {
	t.Helper()
	var keys []string
	for _, ns := range shards {
		name := "rp-new-" + tag
		if _, err := sg.StargateV1alpha1().Hardwares(ns).Create(context.Background(), hardware(name), metav1.CreateOptions{}); err != nil {
			t.Errorf("creating Hardware %s/%s: %v", ns, name, err)
			continue
		}
		keys = append(keys, ns+"/"+name)
	}
	return keys
}

// checkLookedUp waits until every Hardware of keys (namespace/name) has been
// looked up at its datacenter (status.state set), and returns how many were not.
func checkLookedUp(t *testing.T, keys []string) int {
	t.Helper()
	var waiting []string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = until(ctx, time.Second, func() bool {
		ctx := context.Background()
		waiting = nil
		for _, key := range keys {
			ns, name, _ := strings.Cut(key, "/")
			hw, err := sg.StargateV1alpha1().Hardwares(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				waiting = append(waiting, fmt.Sprintf("%s (%v)", key, err))
			} else if hw.Status.State == "" {
				waiting = append(waiting, key)
			}
		}
		return len(waiting) == 0
	})
	if len(waiting) > 0 {
		t.Errorf("%d of %d Hardware created while their datacenter changed hands were not looked up at it (status.state empty) within 20s: %v",
			len(waiting), len(keys), waiting)
	}
	return len(waiting)
}

// jobFlow creates Jobs in every datacenter and notes when each finished.
type jobFlow struct {
	mu       sync.Mutex
	sent     map[string]time.Time // namespace/name -> when its create was first sent
	acked    []string
	finished map[string]time.Time // namespace/name -> when the watch first saw it finished
}

// create makes a Job every jobEvery, round robin over the datacenters (each
// retried until acknowledged), until stop is closed, and waits for the creates.
func (fl *jobFlow) create(ctx context.Context, stop <-chan struct{}, shards []string) {
	tick := time.NewTicker(jobEvery)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		ns, n := shards[i%len(shards)], i/len(shards)
		j := job(fmt.Sprintf("rp-%04d", n), fmt.Sprintf("rp-%02d", n%hwPerShard), "replicas", ops[n%3]) // no repave: quick
		key := ns + "/" + j.Name
		fl.mu.Lock()
		fl.sent[key] = time.Now()
		fl.mu.Unlock()
		wg.Go(func() {
			if ok, _ := createUntilAcknowledged(ctx, sg, ns, j); ok {
				fl.mu.Lock()
				fl.acked = append(fl.acked, key)
				fl.mu.Unlock()
			}
		})
	}
}

func (fl *jobFlow) acknowledged() []string {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return slices.Clone(fl.acked)
}

// watch notes, until ctx ends, when each Job of the run is first seen finished.
func (fl *jobFlow) watch(ctx context.Context) error {
	const selector = "faults.stargate.io/run=replicas"
	jobs := sg.StargateV1alpha1().Jobs(metav1.NamespaceAll)
	start, err := jobs.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, start.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return jobs.Watch(ctx, o)
		}})
	if err != nil {
		return err
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if j, ok := ev.Object.(*v1alpha1.Job); ok && finished(j) {
				key := j.Namespace + "/" + j.Name
				fl.mu.Lock()
				if _, seen := fl.finished[key]; !seen {
					fl.finished[key] = time.Now()
				}
				fl.mu.Unlock()
			}
		}
	}()
	return nil
}

// judgeResumes measures, per event, how long every datacenter took to
// finish a Job created after it (the earliest such Job's end); over
// resumeBound, or none, is an error. It returns the worst per event.
func judgeResumes(t *testing.T, fl *jobFlow, shards []string, events []event) map[string]time.Duration {
	t.Helper()
	fl.mu.Lock()
	defer fl.mu.Unlock()
	worst := map[string]time.Duration{}
	for _, ev := range events {
		var slowest string
		for _, ns := range shards {
			first := time.Duration(-1)
			for key, sent := range fl.sent {
				end, ok := fl.finished[key]
				if !ok || !strings.HasPrefix(key, ns+"/") || sent.Before(ev.at) {
					continue
				}
				if took := end.Sub(ev.at); first < 0 || took < first {
					first = took
				}
			}
			switch {
			case first < 0:
				t.Errorf("no Job of %s created after %s finished", ns, ev.name)
			case first > worst[ev.name]:
				worst[ev.name], slowest = first, ns
			}
		}
		t.Logf("after %s every datacenter finished a Job created after it within %s (slowest %s)", ev.name, worst[ev.name].Round(time.Millisecond), slowest)
		if worst[ev.name] > resumeBound {
			t.Errorf("after %s, %s finished its first Job %s later, want <= %s", ev.name, slowest, worst[ev.name].Round(time.Millisecond), resumeBound)
		}
	}
	return worst
}
