package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/cmd/server"
	"stargate.io/stargate/pkg/controller/jobs"
	"stargate.io/stargate/test/framework"
)

// The campaign section (issue 14): one repave Campaign over every Hardware
// of its own mock datacenters (served from this process, zero-time
// operations), against plain repave Jobs created one by one on the same
// server: what a Campaign costs per Job in time, CPU, API writes and etcd
// writes, and that every member was repaved exactly once.

const (
	campaignName = "bench-repave"
	// campaignDCLabel marks the section's Datacenters: the Campaign selects them.
	campaignDCLabel = "bench-campaign"
	// campaignPlainLabel marks the baseline's Jobs.
	campaignPlainLabel = "bench-campaign-plain"
	campaignTemplate   = "os-2"
	campaignOSVersion  = "2.0.0"
	// campaignOffset keeps the section's MACs apart from the scale fleet's
	// (fleet: at most a few million from 0).
	campaignOffset = 200 * 62500
	// campaignMaxConcurrentJobs is each Datacenter's maxConcurrentJobs.
	campaignMaxConcurrentJobs = 200
)

var campaignProfile = flag.String("campaign-profile", "", "with the campaign section: a CPU profile of stargate-apiserver over 30 s of the Campaign, into this file")

// campaignFleet is the section's Hardware: no Jobs seeded.
func (sz sizes) campaignFleet() fleet {
	return fleet{prefix: "camp-dc-", offset: campaignOffset, datacenters: sz.campaignDatacenters, hardware: sz.campaignHardware}
}

// keyVersion is what etcd says of a key: its creation revision and version
// (the number of puts since it was created).
type keyVersion struct{ create, version int64 }

// snapshot is everything the section counts, read at one moment.
type snapshot struct {
	counts                    // API writes (totals), Events, etcd's own totals
	writes map[string]float64 // Stargate's write requests by "VERB resource[/subresource]"
	reads  map[string]float64 // and its reads (GET, LIST)
	cpu    cpu
	bench  float64               // this process's CPU seconds: the mock datacenters run here
	keys   map[string]keyVersion // every etcd key
}

func (b *bench) snapshot(ctx context.Context) (snapshot, error) {
	var s snapshot
	var err error
	if s.keys, err = b.etcdKeys(ctx); err != nil {
		return s, err
	}
	if s.writes, s.reads, err = b.requestsByVerb(ctx); err != nil {
		return s, err
	}
	if s.counts, err = b.countsNow(ctx); err != nil {
		return s, err
	}
	s.cpu, s.bench = b.cpuNow(), framework.CPUSeconds(os.Getpid())
	return s, nil
}

// etcdKeys reads every key's creation revision and version, keys only, a
// page at a time at one revision.
func (b *bench) etcdKeys(ctx context.Context) (map[string]keyVersion, error) {
	out := map[string]keyVersion{}
	var rev int64
	for from := "\x00"; ; {
		opts := []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithKeysOnly(), clientv3.WithLimit(10000)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		page, err := b.etcd.Get(ctx, from, opts...)
		if err != nil {
			return nil, fmt.Errorf("reading etcd's keys: %w", err)
		}
		rev = page.Header.Revision
		for _, kv := range page.Kvs {
			out[string(kv.Key)] = keyVersion{create: kv.CreateRevision, version: kv.Version}
		}
		if !page.More || len(page.Kvs) == 0 {
			return out, nil
		}
		from = string(page.Kvs[len(page.Kvs)-1].Key) + "\x00"
	}
}

// requestsByVerb is Stargate's apiserver_request_total (every response
// code) by "VERB resource[/subresource]", " (code)" added when it is not
// 2xx: of write verbs, and of GET and LIST (its controllers' requests
// included: they go through its API).
func (b *bench) requestsByVerb(ctx context.Context) (writes, reads map[string]float64, err error) {
	raw, err := b.sg.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("stargate-apiserver /metrics: %w", err)
	}
	writes, reads = map[string]float64{}, map[string]float64{}
	for _, m := range parseMetrics(raw) {
		verb := m.label("verb")
		if m.name != "apiserver_request_total" || m.label("resource") == "" {
			continue
		}
		resource := m.label("resource")
		if sub := m.label("subresource"); sub != "" {
			resource += "/" + sub
		}
		if code := m.label("code"); !strings.HasPrefix(code, "2") {
			resource += " (" + code + ")" // refused: conflicts, not found...
		}
		switch {
		case writeVerbs[verb]:
			writes[verb+" "+resource] += m.value
		case verb == "GET" || verb == "LIST":
			reads[verb+" "+resource] += m.value
		}
	}
	return writes, reads, nil
}

// interval is what happened between two snapshots.
type interval struct {
	took      time.Duration
	writes    map[string]float64 // by request
	reads     map[string]float64 // by request
	events    float64            // Event writes at kube-apiserver
	keyWrites float64            // etcd_mvcc puts + deletes
	byPrefix  map[string]float64 // etcd puts + deletes by key prefix, from the keys' versions
	cpu       cpu
	bench     float64
}

// since is the interval from before to s.
func (s snapshot) since(before snapshot) interval {
	iv := interval{took: s.at.Sub(before.at), writes: delta(before.writes, s.writes), reads: delta(before.reads, s.reads), events: s.events - before.events,
		keyWrites: s.puts + s.deletes - before.puts - before.deletes, byPrefix: keyWritesByPrefix(before.keys, s.keys),
		cpu: s.cpu.since(before.cpu), bench: s.bench - before.bench}
	return iv
}

// delta is after less before, key by key, without the keys that did not change.
func delta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// keyWritesByPrefix counts, by keyPrefix, the puts and deletes that turned
// the keys before into the keys after: a key's version counts its puts since
// its creation. A key created and deleted in between is not seen.
func keyWritesByPrefix(before, after map[string]keyVersion) map[string]float64 {
	out := map[string]float64{}
	for k, a := range after {
		switch b, ok := before[k]; {
		case ok && b.create == a.create:
			out[keyPrefix(k)] += float64(a.version - b.version)
		case ok: // deleted and created again
			out[keyPrefix(k)] += float64(a.version) + 1
		default:
			out[keyPrefix(k)] += float64(a.version)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out[keyPrefix(k)]++
		}
	}
	return out
}

// lessIdle is iv with etcd's idle write rate over iv's length subtracted.
func (iv interval) lessIdle(idle interval) interval {
	f := iv.took.Seconds() / idle.took.Seconds()
	out := iv
	out.keyWrites = iv.keyWrites - idle.keyWrites*f
	out.byPrefix = maps.Clone(iv.byPrefix)
	for k, v := range idle.byPrefix {
		out.byPrefix[k] -= v * f
	}
	return out
}

func (iv interval) apiWrites() float64 { return sumValues(iv.writes) }

func sumValues(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

// campaign runs the section: seed the fleet, start the mock datacenters,
// measure plain repave Jobs, then one Campaign repaving every Hardware.
func (b *bench) campaign(ctx context.Context) error {
	f := b.sz.campaignFleet()
	section := fmt.Sprintf("6. Campaign: one repave Campaign over %d Hardware in %d mock datacenters (served by the bench's process, zero-time operations, maxConcurrentJobs %d); baseline: %d plain repave Jobs",
		f.hardware, f.datacenters, campaignMaxConcurrentJobs, b.sz.campaignPlainJobs)
	dcs, err := b.campaignSetup(ctx, section, f)
	defer func() {
		for _, dc := range dcs {
			dc.stop()
		}
	}()
	if err != nil {
		return err
	}

	// etcd is shared with kube-apiserver (leases, Events) and the replicas'
	// elections: its idle write rate is subtracted from the figures.
	if err := b.settle(ctx, true, time.Minute); err != nil {
		return err
	}
	idleFrom, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	if err := sleep(ctx, idleSeconds*time.Second); err != nil {
		return err
	}
	idleTo, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	idle := idleTo.since(idleFrom)
	fmt.Printf("   etcd key writes while idle for %.0f s: %s\n", idle.took.Seconds(), prefixesAbove(idle.byPrefix, 1, 0))

	plain, plainTook, err := b.campaignBaseline(ctx, f)
	if err != nil {
		return err
	}
	plain = plain.lessIdle(idle)
	run, err := b.runCampaign(ctx, f, dcs)
	if err != nil {
		return err
	}
	run.iv = run.iv.lessIdle(idle)
	b.campaignRows(section, f, plain, plainTook, run, idle)
	return b.campaignCleanup(ctx, dcs, run.uid)
}

// campaignSetup seeds the fleet's Hardware straight into etcd, then starts
// a mock datacenter per namespace knowing its machines (as they are seeded:
// ready, OS 1.0.0), and creates its Datacenter and Template.
func (b *bench) campaignSetup(ctx context.Context, section string, f fleet) ([]*sectionDC, error) {
	for d := range f.datacenters {
		if err := b.ensureNamespace(ctx, f.datacenter(d)); err != nil {
			return nil, err
		}
	}
	s, err := b.learnStorage(ctx, f.datacenter(0), false)
	if err != nil {
		return nil, fmt.Errorf("learning how the server stores objects: %w", err)
	}
	// The template would be a member, unknown to the mock datacenter.
	if err := b.deleteHardware(ctx, f.datacenter(0), "template"); err != nil {
		return nil, err
	}
	took, err := b.seedFleet(ctx, s, f)
	if err != nil {
		return nil, err
	}
	b.add(row{section: section, name: fmt.Sprintf("seeding the %d Hardware straight into etcd (the server's codec, keys and index entries)", f.hardware),
		value: sample{took.Seconds()}, unit: "s"})

	inventory := map[string][]mockdc.InventoryMachine{}
	for i := range f.hardware {
		ns, name := f.hardwareAt(i)
		hw := realisticHardware(ns, name, f.offset+i)
		inventory[ns] = append(inventory[ns], mockdc.InventoryMachine{MAC: hw.Spec.MAC, Name: name, CurrentOS: "1.0.0"})
	}
	var dcs []*sectionDC
	for d := range f.datacenters {
		name := f.datacenter(d)
		dc, err := b.serveMockDC(mockdc.Options{Name: name, MaxRunning: 1 << 20, Inventory: inventory[name]})
		if err != nil {
			return dcs, err
		}
		dcs = append(dcs, dc)
		if _, err := b.sg.StargateV1alpha1().Templates(name).Create(ctx, &v1alpha1.Template{
			ObjectMeta: metav1.ObjectMeta{Name: campaignTemplate},
			Spec:       v1alpha1.TemplateSpec{OSVersion: campaignOSVersion, OSImage: "https://images.example.com/os-2.img"},
		}, metav1.CreateOptions{}); err != nil {
			return dcs, err
		}
		if _, err := b.sg.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{campaignDCLabel: "1"}},
			Spec:       v1alpha1.DatacenterSpec{Endpoint: dc.url, MaxConcurrentJobs: ptr.To[int32](campaignMaxConcurrentJobs)},
		}, metav1.CreateOptions{}); err != nil {
			return dcs, err
		}
	}
	return dcs, nil
}

// deleteHardware deletes a Hardware and waits (up to 30 s) until it is gone.
func (b *bench) deleteHardware(ctx context.Context, ns, name string) error {
	hardwares := b.sg.StargateV1alpha1().Hardwares(ns)
	if err := hardwares.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := hardwares.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		case time.Now().After(deadline):
			return fmt.Errorf("Hardware %s/%s still exists 30 s after its delete", ns, name)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// campaignBaseline creates campaignPlainJobs repave Jobs, one per Hardware
// (the first ones, round robin over the datacenters), at concurrency 32, and
// waits until all succeeded: what a Job costs without a Campaign.
func (b *bench) campaignBaseline(ctx context.Context, f fleet) (interval, time.Duration, error) {
	n := b.sz.campaignPlainJobs
	trackCtx, stopTracking := context.WithCancel(ctx)
	defer stopTracking()
	phases := b.trackPhases(trackCtx, campaignPlainLabel+"=1")
	before, err := b.snapshot(ctx)
	if err != nil {
		return interval{}, 0, err
	}
	start := time.Now()
	err = framework.FanOut(ctx, n, 32, func(i int) error {
		ns, hw := f.hardwareAt(i)
		_, err := b.sg.StargateV1alpha1().Jobs(ns).Create(ctx, &v1alpha1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("plain-%05d", i), Labels: map[string]string{campaignPlainLabel: "1"}},
			Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: hw}, Operation: v1alpha1.OperationRepave,
				TemplateRef: &v1alpha1.LocalObjectReference{Name: campaignTemplate}},
		}, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return interval{}, 0, err
	}
	for deadline := time.Now().Add(5 * time.Minute); phases.count(v1alpha1.JobSucceeded) < n; {
		if failed := phases.count(v1alpha1.JobFailed); failed > 0 {
			return interval{}, 0, fmt.Errorf("%d of the %d plain repave Jobs failed (kubectl get jobs.stargate.io -A -l %s=1)", failed, n, campaignPlainLabel)
		}
		if time.Now().After(deadline) {
			return interval{}, 0, fmt.Errorf("%d of %d plain repave Jobs succeeded in 5 minutes", phases.count(v1alpha1.JobSucceeded), n)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return interval{}, 0, err
		}
	}
	took := time.Since(start)
	// The Jobs' last writes (the Hardware's release) may follow Succeeded.
	if err := b.settle(ctx, false, 15*time.Second); err != nil {
		return interval{}, 0, err
	}
	after, err := b.snapshot(ctx)
	if err != nil {
		return interval{}, 0, err
	}
	fmt.Printf("   %d plain repave Jobs succeeded in %s\n", n, took.Round(time.Millisecond))
	return after.since(before), took, nil
}

// campaignRun is what the Campaign's run measured.
type campaignRun struct {
	uid                types.UID
	toStart, toEnd     time.Duration // from the create sent to startTime, to Complete, as seen by a watch
	statusWrites       float64       // PUT campaigns/status over the run
	ledgerPuts         float64       // the sum of the ledger's keys' versions
	iv                 interval      // from the create sent to settled after Complete
	members, onceAtDCs int
	// mostRunning is the most status.counts.running the watch showed.
	mostRunning int32
	// unfinished and counted are, every 2 s of the run, the Campaign's Jobs
	// not finished (listed) and the running members its status counted.
	unfinished, counted []float64
}

// runCampaign creates the Campaign, follows it to Complete (failing on
// any other end, a pause, or after a time bounded by its size), lets the
// server settle, and checks that every member succeeded exactly once.
func (b *bench) runCampaign(ctx context.Context, f fleet, dcs []*sectionDC) (campaignRun, error) {
	var run campaignRun
	if err := b.settle(ctx, false, 15*time.Second); err != nil {
		return run, err
	}
	before, err := b.snapshot(ctx)
	if err != nil {
		return run, err
	}
	camp := &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: campaignName},
		Spec: v1alpha1.CampaignSpec{
			Operation: v1alpha1.OperationRepave, TemplateRef: &v1alpha1.LocalObjectReference{Name: campaignTemplate},
			DatacenterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{campaignDCLabel: "1"}},
			// The baseline's Hardware are up to date already: members all the same.
			SkipUpToDate:   ptr.To(false),
			Waves:          []v1alpha1.CampaignWave{{Size: intstr.FromString("100%")}},
			MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: ptr.To(intstr.FromString("10%"))},
		},
	}
	sent := time.Now()
	created, err := b.sg.StargateV1alpha1().Campaigns().Create(ctx, camp, metav1.CreateOptions{})
	if err != nil {
		return run, err
	}
	run.uid = created.UID
	limit := max(5*time.Minute, time.Duration(f.hardware)*50*time.Millisecond)
	var profiled sync.WaitGroup
	var profileErr error
	onStart := func() {
		if *campaignProfile != "" {
			profiled.Go(func() { profileErr = b.cpuProfile(ctx, *campaignProfile, 30) })
		}
	}
	final, err := b.followCampaign(ctx, created, sent, limit, &run, onStart)
	profiled.Wait()
	if err != nil {
		return run, err
	}
	if profileErr != nil {
		return run, fmt.Errorf("profiling the Campaign: %w", profileErr)
	}
	// Stargate's last writes may follow Complete; Events (kube-apiserver's,
	// paced) are a rate, not waited for, as after the baseline.
	if err := b.settle(ctx, false, 15*time.Second); err != nil {
		return run, err
	}
	after, err := b.snapshot(ctx)
	if err != nil {
		return run, err
	}
	run.iv = after.since(before)
	run.statusWrites = run.iv.writes["PUT campaigns/status"]
	ledger := ledgerPrefix(run.uid)
	for k, v := range after.keys {
		if strings.HasPrefix(k, ledger) {
			run.ledgerPuts += float64(v.version)
		}
	}
	if run.ledgerPuts == 0 {
		return run, fmt.Errorf("no ledger under %s in etcd: the controller keeps it elsewhere now; update the bench", ledger)
	}
	run.members, run.onceAtDCs, err = b.checkCampaign(ctx, f, dcs, final)
	return run, err
}

// followCampaign watches the Campaign from its create until it is Complete
// and returns it; startTime and Complete are timed when the watch shows
// them. A Campaign Failed, Cancelled or Paused fails the section at once.
func (b *bench) followCampaign(ctx context.Context, camp *v1alpha1.Campaign, sent time.Time, limit time.Duration,
	run *campaignRun, onStart func()) (*v1alpha1.Campaign, error) {
	campaigns := b.sg.StargateV1alpha1().Campaigns()
	opts := metav1.ListOptions{FieldSelector: "metadata.name=" + camp.Name, ResourceVersion: camp.ResourceVersion}
	deadline := time.After(limit)
	progress := time.NewTicker(15 * time.Second)
	defer progress.Stop()
	sampling := time.NewTicker(2 * time.Second)
	defer sampling.Stop()
	for restarts := 0; restarts < 100; restarts++ {
		w, err := campaigns.Watch(ctx, opts)
		if err != nil {
			return nil, err
		}
		for open := true; open; {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok || ev.Type == watch.Error {
					open = false
					break
				}
				c, isCampaign := ev.Object.(*v1alpha1.Campaign)
				if !isCampaign || ev.Type == watch.Deleted {
					continue
				}
				camp, opts.ResourceVersion = c, c.ResourceVersion
				run.mostRunning = max(run.mostRunning, c.Status.Counts.Running)
				if c.Status.StartTime != nil && run.toStart == 0 {
					run.toStart = time.Since(sent)
					fmt.Printf("   Campaign started %s after its create: %d targets\n", run.toStart.Round(time.Millisecond), c.Status.Counts.Targets)
					onStart()
				}
				switch c.Status.Phase {
				case v1alpha1.CampaignComplete:
					run.toEnd = time.Since(sent)
					w.Stop()
					return c, nil
				case v1alpha1.CampaignFailed, v1alpha1.CampaignCancelled, v1alpha1.CampaignPaused:
					w.Stop()
					return nil, fmt.Errorf("Campaign %s is %s: %s; counts %+v", c.Name, c.Status.Phase, conditionMessages(c), c.Status.Counts)
				}
			case <-sampling.C:
				list, err := b.sg.StargateV1alpha1().Jobs("").List(ctx, metav1.ListOptions{
					LabelSelector: v1alpha1.CampaignLabel + "=" + camp.Name, FieldSelector: jobs.UnfinishedJobs})
				if err != nil {
					w.Stop()
					return nil, err
				}
				run.unfinished = append(run.unfinished, float64(len(list.Items)))
				run.counted = append(run.counted, float64(camp.Status.Counts.Running))
			case <-progress.C:
				n := camp.Status.Counts
				fmt.Printf("   Campaign %s: %d of %d succeeded, %d running, %d failed (%s)\n", camp.Status.Phase, n.Succeeded, n.Targets, n.Running, n.Failed,
					time.Since(sent).Round(time.Second))
			case <-deadline:
				w.Stop()
				return nil, fmt.Errorf("Campaign %s not Complete %s after its create: phase %q, counts %+v, %s", camp.Name, limit, camp.Status.Phase, camp.Status.Counts, conditionMessages(camp))
			}
		}
		w.Stop()
		// The server ended the watch: go on from the Campaign as it is now.
		if camp, err = campaigns.Get(ctx, camp.Name, metav1.GetOptions{}); err != nil {
			return nil, err
		}
		opts.ResourceVersion = camp.ResourceVersion
		if camp.Status.Phase == v1alpha1.CampaignComplete {
			run.toEnd = time.Since(sent)
			return camp, nil
		}
	}
	return nil, fmt.Errorf("watching Campaign %s: the watch ended 100 times", camp.Name)
}

func conditionMessages(c *v1alpha1.Campaign) string {
	var out []string
	for _, cond := range c.Status.Conditions {
		out = append(out, fmt.Sprintf("%s=%s (%s: %s)", cond.Type, cond.Status, cond.Reason, cond.Message))
	}
	return strings.Join(out, "; ")
}

// cpuProfile writes a CPU profile of stargate-apiserver over seconds to file.
func (b *bench) cpuProfile(ctx context.Context, file string, seconds int) error {
	prof, err := b.sg.Discovery().RESTClient().Get().AbsPath("/debug/pprof/profile").
		Param("seconds", fmt.Sprint(seconds)).Timeout(time.Duration(seconds+30) * time.Second).DoRaw(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("   CPU profile of stargate-apiserver over %d s of the Campaign: %s (go tool pprof -top %s)\n", seconds, file, file)
	return os.WriteFile(file, prof, 0o644)
}

// checkCampaign checks that every member succeeded exactly once: the
// Campaign's counts; one Job per Hardware of the fleet, Succeeded, its
// campaign finalizer removed; and, at the mock datacenters, one execution
// per Job (by idempotency key, the Job's UID), a repave of that Hardware's
// MAC. It returns the members and the Jobs run exactly once.
func (b *bench) checkCampaign(ctx context.Context, f fleet, dcs []*sectionDC, camp *v1alpha1.Campaign) (int, int, error) {
	n := int32(f.hardware)
	if c := camp.Status.Counts; c.Targets != n || c.Succeeded != n || c.Skipped+c.Pending+c.Running+c.Failed+c.Cancelled != 0 {
		return 0, 0, fmt.Errorf("Campaign %s is Complete with counts %+v, want %d targets, all succeeded", camp.Name, c, n)
	}
	macOf := map[string]string{} // namespace/name -> MAC
	for i := range f.hardware {
		ns, name := f.hardwareAt(i)
		macOf[ns+"/"+name] = realisticHardware(ns, name, f.offset+i).Spec.MAC
	}
	jobOf := map[string]string{} // UID -> namespace/hardware
	seen := map[string]string{}  // namespace/hardware -> Job
	var problems []string
	opts := metav1.ListOptions{LabelSelector: v1alpha1.CampaignLabel + "=" + camp.Name, Limit: 1000}
	for pages := 0; ; pages++ {
		if pages > f.hardware/1000+10 {
			return 0, 0, fmt.Errorf("listing the Campaign's Jobs: more pages than Jobs")
		}
		page, err := b.sg.StargateV1alpha1().Jobs("").List(ctx, opts)
		if err != nil {
			return 0, 0, err
		}
		for _, j := range page.Items {
			key := j.Namespace + "/" + j.Spec.HardwareRef.Name
			switch {
			case macOf[key] == "":
				problems = append(problems, fmt.Sprintf("Job %s/%s is for %s, not a member", j.Namespace, j.Name, key))
			case seen[key] != "":
				problems = append(problems, fmt.Sprintf("%s has two Jobs: %s and %s", key, seen[key], j.Name))
			case j.Status.Phase != v1alpha1.JobSucceeded:
				problems = append(problems, fmt.Sprintf("Job %s/%s is %q: %s", j.Namespace, j.Name, j.Status.Phase, j.Status.Message))
			case slices.Contains(j.Finalizers, v1alpha1.CampaignFinalizer):
				problems = append(problems, fmt.Sprintf("Job %s/%s still has the finalizer %s", j.Namespace, j.Name, v1alpha1.CampaignFinalizer))
			}
			seen[key], jobOf[string(j.UID)] = j.Name, key
		}
		if opts.Continue = page.Continue; opts.Continue == "" {
			break
		}
	}
	if len(seen) != f.hardware {
		problems = append(problems, fmt.Sprintf("%d of %d members have a Job", len(seen), f.hardware))
	}
	runs := map[string]int{}
	for _, dc := range dcs {
		for _, e := range dc.mock.Ledger() {
			key, ours := jobOf[e.IdempotencyKey]
			if !ours {
				continue
			}
			runs[e.IdempotencyKey]++
			if e.MAC != macOf[key] || e.Operation != "repave" {
				problems = append(problems, fmt.Sprintf("%s ran %s on %s for the Job of %s (MAC %s)", dc.name, e.Operation, e.MAC, key, macOf[key]))
			}
		}
	}
	once := 0
	for uid, key := range jobOf {
		switch runs[uid] {
		case 1:
			once++
		case 0:
			problems = append(problems, fmt.Sprintf("the Job of %s never ran at its datacenter", key))
		default:
			problems = append(problems, fmt.Sprintf("the Job of %s ran %d times at its datacenter", key, runs[uid]))
		}
	}
	if len(problems) > 0 {
		more := ""
		if len(problems) > 20 {
			problems, more = problems[:20], fmt.Sprintf(" (and %d more)", len(problems)-20)
		}
		return 0, 0, fmt.Errorf("not every member succeeded exactly once: %s%s", strings.Join(problems, "; "), more)
	}
	return len(seen), once, nil
}

// campaignRows adds the section's figures.
func (b *bench) campaignRows(section string, f fleet, plain interval, plainTook time.Duration, run campaignRun, idle interval) {
	n, p := float64(run.members), float64(b.sz.campaignPlainJobs)
	iv := run.iv
	plainRate, rate := p/plainTook.Seconds(), n/run.toEnd.Seconds()
	b.add(row{section: section, name: "plain repave Jobs completed per second (created at concurrency 32; create of the first to Succeeded of the last)",
		value: sample{plainRate}, unit: "/s"})
	b.add(row{section: section, name: "Campaign: create sent to status.startTime seen (Hardware listed, waves planned, ledger written)",
		value: sample{run.toStart.Seconds()}, unit: "s"})
	b.add(row{section: section, name: "Campaign: create sent to phase Complete seen", value: sample{run.toEnd.Seconds()}, unit: "s"})
	b.add(row{section: section, name: "Campaign: Jobs completed per second (members / create to Complete)", value: sample{rate}, unit: "/s"})
	b.add(row{section: section, name: "Campaign: Jobs completed per second after the start (members / startTime seen to Complete)",
		value: sample{n / (run.toEnd - run.toStart).Seconds()}, unit: "/s"})
	b.add(row{section: section, name: fmt.Sprintf("Campaign: most members running at once, as its status counted them (maxUnavailable.global 10%% allows %d; maxConcurrentJobs %d in each of %d datacenters)",
		max(1, f.hardware/10), campaignMaxConcurrentJobs, f.datacenters), value: sample{float64(run.mostRunning)}, unit: ""})
	if len(run.unfinished) > 0 {
		sampled := fmt.Sprintf("sampled every 2 s of the run, %d samples", len(run.unfinished))
		b.add(row{section: section, name: fmt.Sprintf("Campaign: its Jobs not finished at once (%s; a list by its label and status.phase): mean", sampled),
			value: sample{mean(run.unfinished)}, unit: ""})
		b.add(row{section: section, name: "… most", value: sample{slices.Max(run.unfinished)}, unit: ""})
		b.add(row{section: section, name: "… share of the samples with none", value: sample{100 * share(run.unfinished, 0)}, unit: "%"})
		b.add(row{section: section, name: "… members its status counted running at the same samples: mean", value: sample{mean(run.counted)}, unit: ""})
	}

	perK := func(cpu, jobs float64) float64 { return cpu / jobs * 1000 }
	what := "CPU-s per 1,000 Jobs, %s (create to settled: no write for 1 s)"
	b.add(row{section: section, name: fmt.Sprintf(what, "stargate-apiserver, the whole process (API and every controller), Campaign"),
		value: sample{perK(iv.cpu.stargate, n)}, unit: "s", ratio: iv.cpu.stargate / n / (plain.cpu.stargate / p), versus: "plain Jobs"})
	b.add(row{section: section, name: fmt.Sprintf(what, "stargate-apiserver, the whole process, plain Jobs"), value: sample{perK(plain.cpu.stargate, p)}, unit: "s"})
	b.add(row{section: section, name: fmt.Sprintf(what, "kube-apiserver, Campaign (delegated auth, Events)"), value: sample{perK(iv.cpu.kube, n)}, unit: "s"})
	b.add(row{section: section, name: fmt.Sprintf(what, "etcd, Campaign"), value: sample{perK(iv.cpu.etcd, n)}, unit: "s",
		ratio: iv.cpu.etcd / n / (plain.cpu.etcd / p), versus: "plain Jobs"})
	b.add(row{section: section, name: fmt.Sprintf(what, "the bench's own process (the mock datacenters, the Campaign's watch), Campaign"), value: sample{perK(iv.bench, n)}, unit: "s"})

	b.add(row{section: section, name: "API writes per Job, Campaign (Stargate's apiserver_request_total, every write verb and resource, create to settled)",
		value: sample{iv.apiWrites() / n}, unit: "", ratio: iv.apiWrites() / n / (plain.apiWrites() / p), versus: "plain Jobs"})
	b.add(row{section: section, name: "… by request: " + prefixes(iv.writes, n), value: sample{iv.apiWrites() / n}, unit: ""})
	b.add(row{section: section, name: "API writes per Job, plain repave Jobs (the same count)", value: sample{plain.apiWrites() / p}, unit: ""})
	b.add(row{section: section, name: "… by request: " + prefixes(plain.writes, p), value: sample{plain.apiWrites() / p}, unit: ""})
	b.add(row{section: section, name: "API reads per Job, Campaign (GET and LIST, the controllers' own included; WATCH not counted): " + prefixesAbove(iv.reads, n, 0.005),
		value: sample{sumValues(iv.reads) / n}, unit: "", ratio: sumValues(iv.reads) / n / (sumValues(plain.reads) / p), versus: "plain Jobs"})
	b.add(row{section: section, name: "API reads per Job, plain repave Jobs: " + prefixesAbove(plain.reads, p, 0.005), value: sample{sumValues(plain.reads) / p}, unit: ""})
	b.add(row{section: section, name: "Campaign status writes (PUT campaigns/status, create to settled)", value: sample{run.statusWrites}, unit: ""})
	b.add(row{section: section, name: "… per second of the run (create to Complete; the controller writes at most one a second)",
		value: sample{run.statusWrites / run.toEnd.Seconds()}, unit: "/s"})
	b.add(row{section: section, name: "Event writes/s meanwhile (kube-apiserver's apiserver_request_total; paced by Stargate's Event client, so a rate, not per Job)",
		value: sample{iv.events / iv.took.Seconds()}, unit: "/s"})

	b.add(row{section: section, name: "etcd key writes per Job, Campaign (etcd_mvcc_put_total + delete_total, idle rate subtracted)",
		value: sample{iv.keyWrites / n}, unit: "", ratio: iv.keyWrites / n / (plain.keyWrites / p), versus: "plain Jobs"})
	b.add(row{section: section, name: "… by key prefix (the keys' versions before and after, idle rate subtracted): " + prefixesAbove(iv.byPrefix, n, 0.005),
		value: sample{sumValues(iv.byPrefix) / n}, unit: ""})
	b.add(row{section: section, name: "… of which to the Campaign's ledger (the sum of its keys' versions: every put, straight to etcd)",
		value: sample{run.ledgerPuts / n}, unit: ""})
	b.add(row{section: section, name: "etcd key writes per Job, plain repave Jobs (the same counts)", value: sample{plain.keyWrites / p}, unit: ""})
	b.add(row{section: section, name: "… by key prefix: " + prefixesAbove(plain.byPrefix, p, 0.005), value: sample{sumValues(plain.byPrefix) / p}, unit: ""})
	b.add(row{section: section, name: fmt.Sprintf("etcd idle rate subtracted above: key writes/s over %.0f s idle before the baseline (%s)", idle.took.Seconds(), prefixesAbove(idle.byPrefix, 1, 0)),
		value: sample{idle.keyWrites / idle.took.Seconds()}, unit: "/s"})
	b.add(row{section: section, name: fmt.Sprintf("stargate-apiserver's CPU while idle over the same %.0f s (not subtracted from the CPU figures above)", idle.took.Seconds()),
		value: sample{idle.cpu.stargate / idle.took.Seconds()}, unit: "CPU-s/s"})
	b.add(row{section: section, name: "members whose one Job Succeeded and ran exactly once at its datacenter (Jobs by label; the mocks' ledgers by idempotency key)",
		value: sample{float64(run.onceAtDCs)}, unit: "", target: fmt.Sprintf("all %d", f.hardware), pass: passIf(run.onceAtDCs == f.hardware)})
}

func mean(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t / float64(len(v))
}

// share is the fraction of v equal to x.
func share(v []float64, x float64) float64 {
	n := 0
	for _, y := range v {
		if y == x {
			n++
		}
	}
	return float64(n) / float64(len(v))
}

// prefixesAbove is prefixes without those whose share per is under least
// (zero ones always left out).
func prefixesAbove(m map[string]float64, per, least float64) string {
	kept := map[string]float64{}
	for k, v := range m {
		if v != 0 && math.Abs(v/per) >= least {
			kept[k] = v
		}
	}
	return prefixes(kept, per)
}

// ledgerPrefix is where the campaign controller keeps a Campaign's ledger
// (pkg/controller/campaigns, ledger.go).
func ledgerPrefix(uid types.UID) string {
	return server.DefaultEtcdPathPrefix + "/campaigns/" + string(uid) + "/"
}

// campaignCleanup deletes the Campaign (its finalizer drops the ledger:
// checked) and the section's Datacenters. Its Hardware and Jobs stay.
func (b *bench) campaignCleanup(ctx context.Context, dcs []*sectionDC, uid types.UID) error {
	campaigns := b.sg.StargateV1alpha1().Campaigns()
	if err := campaigns.Delete(ctx, campaignName, metav1.DeleteOptions{}); err != nil {
		return err
	}
	ledger := ledgerPrefix(uid)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		_, err := campaigns.Get(ctx, campaignName, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if apierrors.IsNotFound(err) {
			left, err := b.etcd.Get(ctx, ledger, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return err
			}
			if left.Count > 0 {
				return fmt.Errorf("Campaign %s is deleted but %d keys of its ledger remain under %s", campaignName, left.Count, ledger)
			}
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Campaign %s still exists 2 minutes after its delete", campaignName)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	var errs []error
	for _, dc := range dcs {
		errs = append(errs, b.sg.StargateV1alpha1().Datacenters().Delete(ctx, dc.name, metav1.DeleteOptions{}))
	}
	return errors.Join(errs...)
}
