//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/test/framework"
)

// The Campaign tests' fleet and limits: 4 mock datacenters of their own,
// 3 racks each. The limits are chosen so that each can bind: 4 datacenters
// × perDatacenter 5 > global 16, 4 × 3 racks > 9 racks in flight.
const (
	campaignDatacenters = 4
	campaignRacks       = 3
	maxGlobal           = 16
	maxPerDatacenter    = 5
	maxPerRack          = 2
	maxRacksInFlight    = 9
	// campaignTagLabel marks a test's Datacenters and Hardware, which its
	// Campaign selects (the suite's other Datacenters stay out of it).
	campaignTagLabel = "faults.stargate.io/campaign"
	rackLabel        = "topology.stargate.io/rack"
	canaryLabel      = "faults.stargate.io/canary"
	// limitSamplePeriod: how often the sampler lists the unfinished Jobs.
	limitSamplePeriod = 20 * time.Millisecond
	// etcdPrefix is the server's storage prefix: Jobs are kept under
	// <etcdPrefix>/stargate.io/jobs/<namespace>/<name>, Campaign ledgers
	// under <etcdPrefix>/campaigns/<uid>/ (pkg/controller/campaigns).
	etcdPrefix = "/registry/stargate.io"
	// campaignKeyPrefix holds the Campaigns' election keys.
	campaignKeyPrefix = shardKeyPrefix + "campaign."
)

// TestCampaignSurvivesKill runs a reboot Campaign over 600 Hardware in 4
// mock datacenters (3 racks each) in waves — a canary wave, then 25% waves
// — with maxUnavailable global 16, per datacenter 5, per rack 2 and at most
// 9 racks in flight, and SIGKILLs stargate-apiserver three times, restarting
// it on the same etcd each time: as the Campaign's ledger is being written
// (the first ledger key seen in etcd), as the first Job after that restart
// is created (seen in etcd), and at a random point mid-run. A sampler lists
// the Campaign's unfinished Jobs every 20 ms. The Campaign must Complete
// with every member Succeeded; every Hardware must run exactly once across
// the mocks' ledgers, under its one Job's UID; the limits must hold at
// every sample and at every instant of the mocks' job records; and no Job
// may keep the campaign finalizer.
func TestCampaignSurvivesKill(t *testing.T) {
	const perRack = 50
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("random seed %d", seed)
	cf := startCampaignFleet(t, "ck", perRack)
	etcd := etcdClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	s := &limitSampler{fleet: cf, campaign: "kill-9", client: func() clientset.Interface { return sg }}
	stopSampling := s.start(ctx)
	defer stopSampling()
	before, err := etcd.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	camp, err := sg.StargateV1alpha1().Campaigns().Create(ctx, cf.campaign("kill-9"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ledger := ledgerPrefix(camp.UID)

	var kills []killReport
	kill := func(moment string) {
		t.Helper()
		at := time.Now()
		env.Kill("stargate-apiserver", true)
		k := cf.snapshot(t, etcd, camp.UID, moment, at.Sub(created))
		if err := env.StartStargateAgain(); err != nil {
			t.Fatalf("restarting stargate-apiserver after the kill %s: %v", moment, err)
		}
		k.restart = time.Since(at)
		t.Logf("kill %d, %s: %s", len(kills)+1, moment, k)
		kills = append(kills, k)
	}

	// 1. As the ledger is written: the first ledger key (any put under
	// the Campaign's ledger, from the revision before its create).
	if _, err := firstPut(ctx, etcd, ledger, before.Header.Revision+1, time.Minute, nil); err != nil {
		t.Fatalf("waiting for the Campaign's ledger: %v", err)
	}
	kill("as its ledger was written")

	// 2. As the first Job after that restart is created.
	now, err := etcd.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := firstPut(ctx, etcd, etcdPrefix+"/stargate.io/jobs/", now.Header.Revision+1, time.Minute, cf.isNewJobKey); err != nil {
		camp, _ := sg.StargateV1alpha1().Campaigns().Get(context.Background(), "kill-9", metav1.GetOptions{})
		t.Fatalf("waiting for a Job create: %v; status %+v", err, statusOf(camp))
	}
	kill("as a Job was created")

	// 3. At a random point mid-run.
	fraction := 0.3 + 0.4*rng.Float64()
	want := int32(fraction * float64(cf.members))
	if err := waitCampaign(ctx, sg, "kill-9", 4*time.Minute, func(c *v1alpha1.Campaign) bool {
		return c.Status.Counts.Succeeded >= want
	}); err != nil {
		t.Fatalf("waiting for %d members succeeded: %v", want, err)
	}
	kill(fmt.Sprintf("mid-run, at %d of %d succeeded", want, cf.members))

	final := waitComplete(ctx, t, sg, "kill-9")
	took := time.Since(created)
	stopSampling()
	f := cf.judge(t, sg, final, s)
	worst := time.Duration(0)
	var moments []string
	for _, k := range kills {
		worst = max(worst, k.restart)
		moments = append(moments, k.String())
	}
	t.Logf("Complete %s after its create, through %d kills", took.Round(100*time.Millisecond), len(kills))
	record(t, row{Fault: "kill -9 of stargate-apiserver mid-Campaign (as its ledger is written, at a Job create, mid-run)",
		Runs: len(kills), Jobs: f.jobs, Lost: f.lost, Duplicated: f.duplicated, Stuck: f.stuck,
		Recovery: worst.Round(100 * time.Millisecond).String(),
		Note: fmt.Sprintf("%d Hardware in 4 datacenters × 3 racks, Complete in %s; kills: %s; %s (recovery = worst kill to Available)",
			cf.members, took.Round(time.Second), strings.Join(moments, "; "), f)})
}

// TestCampaignDriverHandoff runs a reboot Campaign over 360 Hardware in 4
// mock datacenters with three replicas on one etcd (lease 3 s), finds the
// replica driving it from its election key in etcd, SIGKILLs it mid-run as
// it records members started in the ledger (before their Jobs), then
// SIGSTOPs the replica that took over, at the same step, for 8 s and
// SIGCONTs it (it resumes with its step half done). Another
// replica must take over each time, and the assertions of
// TestCampaignSurvivesKill hold: Complete, every member run once under its
// Job's UID, limits never exceeded, every Job released.
func TestCampaignDriverHandoff(t *testing.T) {
	const perRack = 30
	cf := startCampaignFleet(t, "ch", perRack)
	etcd := etcdClient(t)
	rs := &campaignReplicas{clients: map[string]clientset.Interface{}, out: map[string]bool{}}
	if err := rs.add("stargate-apiserver", env.StargatePort); err != nil {
		t.Fatal(err)
	}
	startReplicas(t, rs, "stargate-apiserver-c2", "stargate-apiserver-c3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const name = "handoff"
	s := &limitSampler{fleet: cf, campaign: name, client: rs.client}
	stopSampling := s.start(ctx)
	defer stopSampling()
	created := time.Now()
	camp, err := rs.client().StargateV1alpha1().Campaigns().Create(ctx, cf.campaign(name), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	var handoffs []string
	worst := time.Duration(0)
	// disrupt waits until fraction of the members succeeded, then for the
	// driver to record members started in the ledger (it creates their
	// Jobs next), does it to the driver at once, and waits for another
	// replica to hold the key and the Campaign to make progress.
	disrupt := func(what string, fraction float64, do func(replica string)) string {
		t.Helper()
		want := int32(fraction * float64(cf.members))
		if err := waitCampaign(ctx, rs.client(), name, 4*time.Minute, func(c *v1alpha1.Campaign) bool {
			return c.Status.Counts.Succeeded >= want
		}); err != nil {
			t.Fatalf("waiting for %d members succeeded: %v", want, err)
		}
		driver, err := campaignDriver(ctx, etcd, name)
		if err != nil || driver == "" {
			t.Fatalf("no driver of the Campaign in etcd (%v)", err)
		}
		now, err := etcd.Get(ctx, "/", clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := firstPut(ctx, etcd, ledgerPrefix(camp.UID), now.Header.Revision+1, time.Minute, isStartedRecord); err != nil {
			t.Fatalf("waiting for a member recorded started: %v", err)
		}
		at := time.Now()
		rs.setOut(driver, true)
		do(driver)
		var next string
		if err := until(ctx, 50*time.Millisecond, func() bool {
			next, _ = campaignDriver(ctx, etcd, name)
			return next != "" && next != driver
		}); err != nil {
			t.Fatalf("no replica took the Campaign over from %s after %s: %v", driver, what, err)
		}
		tookOver := time.Since(at)
		var doneThen int32
		if err := waitCampaign(ctx, rs.client(), name, time.Minute, func(c *v1alpha1.Campaign) bool {
			if doneThen == 0 {
				doneThen = c.Status.Counts.Succeeded
			}
			return c.Status.Counts.Succeeded > doneThen
		}); err != nil {
			t.Fatalf("the Campaign made no progress after %s of %s: %v", what, driver, err)
		}
		moving := time.Since(at)
		worst = max(worst, moving)
		h := fmt.Sprintf("%s of the driver %s as it recorded members started, at %d succeeded: %s holds the key after %s, progress after %s",
			what, driver, want, next, tookOver.Round(10*time.Millisecond), moving.Round(10*time.Millisecond))
		t.Log(h)
		handoffs = append(handoffs, h)
		return driver
	}
	killed := disrupt("SIGKILL", 0.3, func(driver string) { env.Kill(driver, true) })
	paused := disrupt("SIGSTOP", 0.6, func(driver string) {
		if err := env.Signal(driver, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	})
	time.Sleep(8 * time.Second)
	if err := env.Signal(paused, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	rs.setOut(paused, false)
	if killed == "stargate-apiserver" { // the suite's other tests need it, behind the APIService
		if err := env.StartStargateAgain(); err != nil {
			t.Fatal(err)
		}
		rs.setOut(killed, false)
	}

	final := waitComplete(ctx, t, rs.client(), name)
	took := time.Since(created)
	stopSampling()
	if logs, err := env.Logs(); err == nil {
		log := string(logs[paused])
		t.Logf("%s, resumed: saw its etcd lease gone: %v; found an election key gone before acting (Leading): %d times; syncs of the Campaign that failed: %d",
			paused, strings.Contains(log, "etcd lease expired or was revoked"),
			strings.Count(log, "election key for the datacenter is gone from etcd"),
			countLines(log, `"Sync failed; will retry"`, `controller="campaign-`+name+`"`))
	}
	f := cf.judge(t, rs.client(), final, s)
	t.Logf("Complete %s after its create", took.Round(100*time.Millisecond))
	record(t, row{Fault: "Campaign driver SIGKILLed, then its successor SIGSTOPped 8s (3 replicas, lease 3s)",
		Runs: 2, Jobs: f.jobs, Lost: f.lost, Duplicated: f.duplicated, Stuck: f.stuck,
		Recovery: worst.Round(100 * time.Millisecond).String(),
		Note: fmt.Sprintf("%d Hardware in 4 datacenters × 3 racks, Complete in %s; %s; %s (recovery = worst event to the next member succeeded)",
			cf.members, took.Round(time.Second), strings.Join(handoffs, "; "), f)})
}

// campaignFleet is a test's datacenters <tag>-0..3, each at a mock of its
// own, and their Hardware.
type campaignFleet struct {
	tag     string
	dcs     []string
	members int
	// domainOf: MAC -> datacenter/rack; macOf: datacenter/hardware -> MAC.
	domainOf, macOf map[string]string
	rackOf          map[string]string // datacenter/hardware -> datacenter/rack
}

// startCampaignFleet starts 4 mock datacenters and creates their
// namespaces, Datacenters (maxConcurrentJobs 100) and 3 racks of perRack
// Hardware each, the first of rack-0 a canary.
func startCampaignFleet(t *testing.T, tag string, perRack int) *campaignFleet {
	t.Helper()
	ctx := context.Background()
	cf := &campaignFleet{tag: tag, domainOf: map[string]string{}, macOf: map[string]string{}, rackOf: map[string]string{}}
	var namespaces strings.Builder
	var hws []*v1alpha1.Hardware
	for i := range campaignDatacenters {
		dc := fmt.Sprintf("%s-%d", tag, i)
		cf.dcs = append(cf.dcs, dc)
		fmt.Fprintf(&namespaces, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\n", dc)
		var known []mockdc.InventoryMachine
		for r := range campaignRacks {
			for i := range perRack {
				hw := hardware(fmt.Sprintf("srv-%d-%03d", r, i))
				hw.Namespace = dc
				rack := fmt.Sprintf("rack-%d", r)
				hw.Labels = map[string]string{campaignTagLabel: tag, rackLabel: rack}
				if r == 0 && i == 0 {
					hw.Labels[canaryLabel] = "true"
				}
				cf.domainOf[hw.Spec.MAC] = dc + "/" + rack
				cf.macOf[dc+"/"+hw.Name] = hw.Spec.MAC
				cf.rackOf[dc+"/"+hw.Name] = dc + "/" + rack
				hws = append(hws, hw)
				known = append(known, mockdc.InventoryMachine{MAC: hw.Spec.MAC, Name: hw.Name, IPv4: hw.Spec.IPv4,
					PowerState: datacenter.PowerOn})
			}
		}
		// The mock knows its machines, powered on: looked up, they are
		// ready (a machine it did not know would be unknown, unavailable).
		if err := env.StartMockDC(dc, known); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := env.KubectlIn("admin", namespaces.String(), "apply", "-f", "-"); err != nil {
		t.Fatalf("creating the namespaces: %v: %s", err, out)
	}
	for _, dc := range cf.dcs {
		if _, err := sg.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: dc, Labels: map[string]string{campaignTagLabel: tag}},
			Spec:       v1alpha1.DatacenterSpec{Endpoint: env.MockDC[dc], MaxConcurrentJobs: ptr.To[int32](100)},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cf.members = len(hws)
	if err := framework.FanOut(ctx, len(hws), 16, func(i int) error {
		_, err := sg.StargateV1alpha1().Hardwares(hws[i].Namespace).Create(ctx, hws[i], metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Fatalf("creating Hardware: %v", err)
	}
	// Wait for their lookups: members in state unknown would count as
	// unavailable and hold the Campaign.
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	states := map[v1alpha1.HardwareState]int{}
	if err := until(wait, 500*time.Millisecond, func() bool {
		list, err := sg.StargateV1alpha1().Hardwares(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: campaignTagLabel + "=" + tag})
		if err != nil {
			return false
		}
		clear(states)
		for _, hw := range list.Items {
			states[hw.Status.State]++
		}
		return states[v1alpha1.HardwareStateReady] == cf.members
	}); err != nil {
		t.Fatalf("the fleet's Hardware were not all looked up ready within a minute: states %v", states)
	}
	return cf
}

// campaign is the tests' Campaign: a reboot of the fleet, a canary wave of
// one member per datacenter, then waves of 25%, within the limits, with no
// failure to spare (a kill is no reason for one).
func (cf *campaignFleet) campaign(name string) *v1alpha1.Campaign {
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{campaignTagLabel: cf.tag}}
	limit := func(n int) *intstr.IntOrString { v := intstr.FromInt32(int32(n)); return &v }
	return &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.CampaignSpec{
			Operation:          v1alpha1.OperationReboot,
			DatacenterSelector: selector, HardwareSelector: selector,
			Waves: []v1alpha1.CampaignWave{
				{Size: intstr.FromInt32(campaignDatacenters), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{canaryLabel: "true"}}},
				{Size: intstr.FromString("25%")},
			},
			MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: limit(maxGlobal), PerDatacenter: limit(maxPerDatacenter),
				PerFailureDomain: limit(maxPerRack)},
			FailureDomainLabel:        rackLabel,
			MaxFailureDomainsInFlight: ptr.To[int32](maxRacksInFlight),
			FailurePolicy:             v1alpha1.CampaignFailurePolicy{MaxFailures: v1alpha1.CampaignFailureBudgets{Global: limit(0)}},
		},
	}
}

// isNewJobKey: a Job created (its first version) in one of the fleet's namespaces.
func (cf *campaignFleet) isNewJobKey(kv *clientv3.Event) bool {
	rest := strings.TrimPrefix(string(kv.Kv.Key), etcdPrefix+"/stargate.io/jobs/")
	ns, _, _ := strings.Cut(rest, "/")
	return kv.Kv.Version == 1 && slices.Contains(cf.dcs, ns)
}

// countLines counts the lines of log that contain every one of has.
func countLines(log string, has ...string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if !slices.ContainsFunc(has, func(h string) bool { return !strings.Contains(line, h) }) {
			n++
		}
	}
	return n
}

// isStartedRecord: a ledger record of a member started (its Job is created next).
func isStartedRecord(ev *clientv3.Event) bool {
	state, err := ledgerState(ev.Kv.Value)
	return err == nil && state == "started"
}

// ledgerState is the state ("started", "succeeded"...) of a Campaign
// ledger record.
func ledgerState(value []byte) (string, error) {
	var rec struct {
		State string `json:"s"`
	}
	err := json.Unmarshal(value, &rec)
	return rec.State, err
}

func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{env.EtcdURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	return etcd
}

func ledgerPrefix(uid types.UID) string { return etcdPrefix + "/campaigns/" + string(uid) + "/" }

// firstPut watches etcd under prefix from revision rev and returns when the
// first put that match accepts (all, if nil) is seen.
func firstPut(ctx context.Context, etcd *clientv3.Client, prefix string, rev int64, timeout time.Duration, match func(*clientv3.Event) bool) (*clientv3.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for resp := range etcd.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if err := resp.Err(); err != nil {
			return nil, err
		}
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypePut && (match == nil || match(ev)) {
				return ev, nil
			}
		}
	}
	return nil, fmt.Errorf("no put under %s within %s: %w", prefix, timeout, ctx.Err())
}

// killReport is what a SIGKILLed server left behind, read from etcd and
// the mocks while nothing ran.
type killReport struct {
	moment  string
	after   time.Duration // from the Campaign's create
	ledger  int           // member records
	sealed  bool
	started int // members recorded started
	final   int // members recorded with an outcome
	jobs    int // the Campaign's Jobs in etcd
	ran     int // executions in the mocks' ledgers
	restart time.Duration
}

func (k killReport) String() string {
	sealed := "not sealed"
	if k.sealed {
		sealed = "sealed"
	}
	return fmt.Sprintf("%s (%s after the create): ledger %d members, %s, %d started, %d with an outcome; %d Jobs; %d executions; back and Available in %s",
		k.moment, k.after.Round(time.Millisecond), k.ledger, sealed, k.started, k.final, k.jobs, k.ran, k.restart.Round(100*time.Millisecond))
}

// snapshot reads what the Campaign's ledger, its Jobs and the mocks hold.
func (cf *campaignFleet) snapshot(t *testing.T, etcd *clientv3.Client, uid types.UID, moment string, after time.Duration) killReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := killReport{moment: moment, after: after}
	resp, err := etcd.Get(ctx, ledgerPrefix(uid), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		key := strings.TrimPrefix(string(kv.Key), ledgerPrefix(uid))
		if key == "sealed" {
			k.sealed = true
			continue
		}
		k.ledger++
		state, err := ledgerState(kv.Value)
		if err != nil {
			t.Errorf("ledger record %s: %v", kv.Key, err)
		}
		switch state {
		case "started":
			k.started++
		case "succeeded", "failed", "cancelled":
			k.final++
		}
	}
	for _, dc := range cf.dcs {
		jobs, err := etcd.Get(ctx, etcdPrefix+"/stargate.io/jobs/"+dc+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		k.jobs += int(jobs.Count)
		ledger, err := env.Ledger(dc)
		if err != nil {
			t.Fatal(err)
		}
		k.ran += len(ledger)
	}
	return k
}

// waitCampaign polls Campaign name until cond holds; it gives up early
// when the Campaign ended otherwise or a failure budget paused it.
func waitCampaign(ctx context.Context, c clientset.Interface, name string, timeout time.Duration, cond func(*v1alpha1.Campaign) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *v1alpha1.Campaign
	for {
		attempt, stop := context.WithTimeout(ctx, 2*time.Second)
		camp, err := c.StargateV1alpha1().Campaigns().Get(attempt, name, metav1.GetOptions{})
		stop()
		if err == nil {
			last = camp
			if cond(camp) {
				return nil
			}
			if ended(camp) {
				return fmt.Errorf("campaign %s ended %s: %+v", name, camp.Status.Phase, statusOf(camp))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("campaign %s: %w; last status %+v", name, ctx.Err(), statusOf(last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitComplete waits up to 5 minutes for Campaign name to be Complete and
// returns it as last read.
func waitComplete(ctx context.Context, t *testing.T, client clientset.Interface, name string) *v1alpha1.Campaign {
	t.Helper()
	var final *v1alpha1.Campaign
	if err := waitCampaign(ctx, client, name, 5*time.Minute, func(c *v1alpha1.Campaign) bool {
		final = c
		return c.Status.Phase == v1alpha1.CampaignComplete
	}); err != nil {
		t.Fatalf("the Campaign did not complete: %v; last status %+v", err, statusOf(final))
	}
	return final
}

func ended(c *v1alpha1.Campaign) bool {
	switch c.Status.Phase {
	case v1alpha1.CampaignFailed, v1alpha1.CampaignCancelled:
		return true
	case v1alpha1.CampaignPaused:
		for _, cond := range c.Status.Conditions {
			if cond.Type == v1alpha1.CampaignConditionPaused && cond.Reason == v1alpha1.CampaignReasonFailureBudgetExceeded {
				return true
			}
		}
	}
	return false
}

// statusOf is a Campaign's status without its plan (long), for messages.
func statusOf(c *v1alpha1.Campaign) any {
	if c == nil {
		return nil
	}
	s := c.Status.DeepCopy()
	s.Plan = nil
	return *s
}

// limitSampler lists the Campaign's unfinished Jobs every limitSamplePeriod
// and keeps the most seen at once per scope: a Job counts from its create
// (the member is unavailable from then on) until it finished.
type limitSampler struct {
	fleet    *campaignFleet
	campaign string
	client   func() clientset.Interface

	mu              sync.Mutex
	samples, failed int
	peak            peaks
}

// peaks is the most members unavailable at once, per scope.
type peaks struct {
	global, racks  int
	perDC, perRack map[string]int
}

func (p *peaks) observe(dcs, racks map[string]int) {
	if p.perDC == nil {
		p.perDC, p.perRack = map[string]int{}, map[string]int{}
	}
	total, inFlight := 0, 0
	for k, n := range dcs {
		total += n
		p.perDC[k] = max(p.perDC[k], n)
	}
	for k, n := range racks {
		if n > 0 {
			inFlight++
		}
		p.perRack[k] = max(p.perRack[k], n)
	}
	p.global, p.racks = max(p.global, total), max(p.racks, inFlight)
}

func (p peaks) String() string {
	return fmt.Sprintf("global %d, per datacenter %d, per rack %d, racks %d", p.global, maxOf(p.perDC), maxOf(p.perRack), p.racks)
}

func maxOf(m map[string]int) int {
	n := 0
	for _, v := range m {
		n = max(n, v)
	}
	return n
}

// start samples until the returned function is called (which waits for
// the sampler to stop).
func (s *limitSampler) start(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(limitSamplePeriod)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s.take(ctx)
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

func (s *limitSampler) take(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	list, err := s.client().StargateV1alpha1().Jobs(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		LabelSelector: v1alpha1.CampaignLabel + "=" + s.campaign, FieldSelector: "status.phase!=Succeeded,status.phase!=Failed"})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failed++ // the server is down, or being restarted
		return
	}
	s.samples++
	dcs, racks := map[string]int{}, map[string]int{}
	for _, j := range list.Items {
		dcs[j.Namespace]++
		racks[s.fleet.rackOf[j.Namespace+"/"+j.Spec.HardwareRef.Name]]++
	}
	s.peak.observe(dcs, racks)
}

// campaignFindings is what judge found.
type campaignFindings struct {
	jobs, lost, duplicated, stuck int
	samples, failedSamples        int
	sampled, replayed             peaks
}

func (f campaignFindings) String() string {
	return fmt.Sprintf("%d samples every %s (%d more failed while the server was away); most at once sampled: %s; replayed from the mocks' records: %s (limits %d, %d, %d, %d)",
		f.samples, limitSamplePeriod, f.failedSamples, f.sampled, f.replayed, maxGlobal, maxPerDatacenter, maxPerRack, maxRacksInFlight)
}

// judge checks a Complete Campaign against its Jobs, the mocks' ledgers
// and job records, and the sampler.
func (cf *campaignFleet) judge(t *testing.T, c clientset.Interface, camp *v1alpha1.Campaign, s *limitSampler) campaignFindings {
	t.Helper()
	ctx := context.Background()
	f := campaignFindings{jobs: cf.members}
	if got := camp.Status.Counts; got.Targets != int32(cf.members) || got.Succeeded != int32(cf.members) ||
		got.Pending+got.Running+got.Failed+got.Cancelled+got.Skipped != 0 {
		t.Errorf("counts %+v, want all %d succeeded", got, cf.members)
	}

	// One Job per member, Succeeded; its UID is the key its member ran under.
	uidOf := map[string]string{} // MAC -> Job UID
	var held []string
	wait, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err := until(wait, 200*time.Millisecond, func() bool {
		held = held[:0]
		list, err := c.StargateV1alpha1().Jobs(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.CampaignLabel + "=" + camp.Name})
		if err != nil {
			return false
		}
		clear(uidOf)
		perMember := map[string]int{}
		f.stuck = 0
		for _, j := range list.Items {
			key := j.Namespace + "/" + j.Spec.HardwareRef.Name
			perMember[key]++
			uidOf[cf.macOf[key]] = string(j.UID)
			if j.Status.Phase != v1alpha1.JobSucceeded {
				f.stuck++
			}
			if slices.Contains(j.Finalizers, v1alpha1.CampaignFinalizer) {
				held = append(held, j.Namespace+"/"+j.Name)
			}
		}
		if len(held) > 0 {
			return false
		}
		for key, n := range perMember {
			if n != 1 {
				t.Errorf("member %s got %d Jobs", key, n)
			}
		}
		if len(perMember) != cf.members || len(list.Items) != cf.members {
			t.Errorf("%d Jobs for %d members, want one for each of %d", len(list.Items), len(perMember), cf.members)
		}
		if f.stuck > 0 {
			t.Errorf("%d Jobs not Succeeded", f.stuck)
		}
		return true
	})
	if err != nil {
		t.Errorf("%d Jobs still hold the campaign finalizer 15s after Complete, e.g. %v", len(held), held[:min(len(held), 5)])
	}

	// Every member ran exactly once, under its Job's UID.
	ranByMAC, ranByKey := map[string]int{}, map[string]int{}
	var records []mockRecord
	for _, dc := range cf.dcs {
		ledger, err := env.Ledger(dc)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ledger {
			ranByMAC[e.MAC]++
			ranByKey[e.IdempotencyKey]++
			if _, ours := cf.domainOf[e.MAC]; !ours {
				t.Errorf("%s ran a job on %s, no member of the Campaign", dc, e.MAC)
			} else if uidOf[e.MAC] != e.IdempotencyKey {
				t.Errorf("%s ran %s under key %s, its Job's UID is %s", dc, e.MAC, e.IdempotencyKey, uidOf[e.MAC])
			}
		}
		jobs, err := env.MockJobs(dc)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if j.StartedAt != nil {
				records = append(records, mockRecord{mac: j.MAC, start: *j.StartedAt, end: j.FinishedAt})
			}
		}
	}
	for mac := range cf.domainOf {
		switch n := ranByMAC[mac]; {
		case n == 0:
			f.lost++
			t.Errorf("member %s (%s) never ran", mac, cf.domainOf[mac])
		case n > 1:
			f.duplicated += n - 1
			t.Errorf("member %s (%s) ran %d times", mac, cf.domainOf[mac], n)
		}
	}
	for key, n := range ranByKey {
		if n > 1 {
			t.Errorf("idempotency key %s ran %d times", key, n)
		}
	}

	// The limits, sampled and replayed.
	s.mu.Lock()
	f.samples, f.failedSamples, f.sampled = s.samples, s.failed, s.peak
	s.mu.Unlock()
	f.replayed = cf.replay(records)
	t.Logf("%d samples (%d failed while the server was away); most at once sampled: %s, per datacenter %v, per rack %v",
		f.samples, f.failedSamples, f.sampled, f.sampled.perDC, f.sampled.perRack)
	t.Logf("replayed from %d mock job records: %s, per datacenter %v, per rack %v", len(records), f.replayed, f.replayed.perDC, f.replayed.perRack)
	if f.samples < 100 {
		t.Errorf("only %d samples", f.samples)
	}
	checkCampaignLimits(t, "sampled", f.sampled)
	checkCampaignLimits(t, "replayed from the mocks", f.replayed)
	if f.replayed.global < maxGlobal/2 {
		t.Errorf("at most %d ran at once: the Campaign did not use its room (%d)", f.replayed.global, maxGlobal)
	}
	return f
}

type mockRecord struct {
	mac   string
	start time.Time
	end   *time.Time // nil: still running
}

// replay walks the mocks' job records in time order and returns the most
// running at once per scope (a job ending as another starts does not
// overlap it).
func (cf *campaignFleet) replay(records []mockRecord) peaks {
	type edge struct {
		at    time.Time
		delta int
		mac   string
	}
	var edges []edge
	for _, r := range records {
		end := time.Now()
		if r.end != nil {
			end = *r.end
		}
		edges = append(edges, edge{r.start, 1, r.mac}, edge{end, -1, r.mac})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	var p peaks
	dcs, racks := map[string]int{}, map[string]int{}
	for _, e := range edges {
		domain := cf.domainOf[e.mac]
		dc, _, _ := strings.Cut(domain, "/")
		dcs[dc] += e.delta
		racks[domain] += e.delta
		p.observe(dcs, racks)
	}
	return p
}

func checkCampaignLimits(t *testing.T, how string, p peaks) {
	t.Helper()
	if p.global > maxGlobal {
		t.Errorf("%s: %d members unavailable at once, limit %d", how, p.global, maxGlobal)
	}
	for k, n := range p.perDC {
		if n > maxPerDatacenter {
			t.Errorf("%s: %d unavailable at once in %s, limit %d", how, n, k, maxPerDatacenter)
		}
	}
	for k, n := range p.perRack {
		if n > maxPerRack {
			t.Errorf("%s: %d unavailable at once in %s, limit %d", how, n, k, maxPerRack)
		}
	}
	if p.racks > maxRacksInFlight {
		t.Errorf("%s: %d racks in flight at once, limit %d", how, p.racks, maxRacksInFlight)
	}
}

// campaignReplicas are the replicas of TestCampaignDriverHandoff, and
// which of them are out (killed or stopped): requests go to one that is not.
type campaignReplicas struct {
	mu      sync.Mutex
	order   []string
	clients map[string]clientset.Interface
	out     map[string]bool
}

func (rs *campaignReplicas) add(name string, port int) error {
	cfg := env.RESTConfig("admin", port)
	cfg.Timeout = 5 * time.Second
	c, err := clientset.NewForConfig(cfg)
	if err != nil {
		return err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.order = append(rs.order, name)
	rs.clients[name] = c
	return nil
}

func (rs *campaignReplicas) setOut(name string, out bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.out[name] = out
}

// client is the first replica's client that is not out.
func (rs *campaignReplicas) client() clientset.Interface {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, name := range rs.order {
		if !rs.out[name] {
			return rs.clients[name]
		}
	}
	return rs.clients[rs.order[0]]
}

// campaignDriver is the replica holding Campaign name's oldest election
// key, "" if none holds one.
func campaignDriver(ctx context.Context, etcd *clientv3.Client, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := etcd.Get(ctx, campaignKeyPrefix+name+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil || len(resp.Kvs) == 0 {
		return "", err
	}
	return processOf(string(resp.Kvs[0].Value)), nil
}

// processOf is the started process whose PID is in a replica's identity
// (host_pid_random), or the identity itself.
func processOf(identity string) string {
	parts := strings.Split(identity, "_")
	if len(parts) < 3 {
		return identity
	}
	for _, name := range []string{"stargate-apiserver", "stargate-apiserver-c2", "stargate-apiserver-c3"} {
		if pid := env.PID(name); pid != 0 && fmt.Sprint(pid) == parts[len(parts)-2] {
			return name
		}
	}
	return identity
}
