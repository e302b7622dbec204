package datacenters

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/component-base/metrics/testutil"
	testingclock "k8s.io/utils/clock/testing"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller"
	"stargate.io/stargate/pkg/controller/metrics"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
	clientfake "stargate.io/stargate/pkg/generated/clientset/versioned/fake"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions"
)

func TestProbeSetsReadyActiveJobsAndLastProbeTime(t *testing.T) {
	metrics.Register()
	ctx := context.Background()
	running := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-west", Name: "j1", UID: "u1"},
		Status: v1alpha1.JobStatus{Phase: v1alpha1.JobRunning}}
	done := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-west", Name: "j2", UID: "u2"},
		Status: v1alpha1.JobStatus{Phase: v1alpha1.JobSucceeded}}
	c, client, dc, clock := newProber(t, running, done)

	after, err := c.sync(ctx, "dc-west")
	if err != nil || after != 10*time.Second {
		t.Fatalf("probe: %s %v", after, err)
	}
	got, _ := client.StargateV1alpha1().Datacenters().Get(ctx, "dc-west", metav1.GetOptions{})
	if !meta.IsStatusConditionTrue(got.Status.Conditions, ReadyCondition) || got.Status.ActiveJobs != 1 ||
		got.Status.LastProbeTime == nil || !got.Status.LastProbeTime.Time.Equal(clock.Now()) {
		t.Errorf("after a good probe: %+v", got.Status)
	}
	if up, _ := testutil.GetGaugeMetricValue(metrics.DatacenterUp.WithLabelValues("dc-west")); up != 1 {
		t.Errorf("stargate_datacenter_up = %v, want 1", up)
	}

	// The datacenter stops answering: Ready turns False with the error.
	dc.FailNext(fake.MethodHealth, errors.New("connection refused"))
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		cached, err := c.dcs.Get("dc-west")
		return err == nil && cached.Status.LastProbeTime != nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	clock.Step(10 * time.Second)
	if _, err := c.sync(ctx, "dc-west"); err != nil {
		t.Fatal(err)
	}
	got, _ = client.StargateV1alpha1().Datacenters().Get(ctx, "dc-west", metav1.GetOptions{})
	cond := meta.FindStatusCondition(got.Status.Conditions, ReadyCondition)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != "Unreachable" || cond.Message != "connection refused" {
		t.Errorf("after a failed probe: %+v", cond)
	}
	if up, _ := testutil.GetGaugeMetricValue(metrics.DatacenterUp.WithLabelValues("dc-west")); up != 0 {
		t.Errorf("stargate_datacenter_up = %v, want 0", up)
	}
}

// newProber runs a prober of dc-west, healthy, with jobs.
func newProber(t *testing.T, jobs ...runtime.Object) (*Controller, *clientfake.Clientset, *fake.Client, *testingclock.FakeClock) {
	t.Helper()
	metrics.Register()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client := clientfake.NewClientset(append(jobs, &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-west"},
		Spec: v1alpha1.DatacenterSpec{Endpoint: "https://dc-west.example"}})...)
	factory := informers.NewSharedInformerFactory(client, 0)
	v1 := factory.Stargate().V1alpha1()
	if err := controller.AddJobIndexers(v1.Jobs().Informer()); err != nil {
		t.Fatal(err)
	}
	dc := fake.New()
	clock := testingclock.NewFakeClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	c, err := New(client, v1.Datacenters(), v1.Jobs(), controller.NewRunningJobs(v1.Jobs().Informer()),
		func(*v1alpha1.Datacenter) (datacenter.Client, error) { return dc, nil }, Options{Interval: 10 * time.Second, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return c, client, dc, clock
}

// statusWrites counts the Datacenter status updates sent so far.
func statusWrites(client *clientfake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.Matches("update", "datacenters") && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

// probe runs one probe, then waits until the cache shows what it wrote.
func probe(t *testing.T, c *Controller, client *clientfake.Clientset) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.sync(ctx, "dc-west"); err != nil {
		t.Fatal(err)
	}
	live, err := client.StargateV1alpha1().Datacenters().Get(ctx, "dc-west", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		cached, err := c.dcs.Get("dc-west")
		return err == nil && cached.ResourceVersion == live.ResourceVersion &&
			apiequality.Semantic.DeepEqual(cached.Status, live.Status), nil
	}); err != nil {
		t.Fatalf("the cache never caught up: %v", err)
	}
}

// An unchanged datacenter is written once, not at every probe; a change is
// written at once; lastProbeTime is refreshed every lastProbeRefresh.
func TestProbeWritesOnlyOnChange(t *testing.T) {
	c, client, dc, clock := newProber(t)
	for range 6 {
		probe(t, c, client)
		clock.Step(10 * time.Second)
	}
	if n := statusWrites(client); n != 1 {
		t.Fatalf("6 probes of an unchanged healthy datacenter wrote its status %d times, want 1", n)
	}

	dc.FailNext(fake.MethodHealth, errors.New("connection refused"))
	probe(t, c, client)
	if n := statusWrites(client); n != 2 {
		t.Errorf("a datacenter turning unreachable: %d writes, want 2", n)
	}
	cached, _ := c.dcs.Get("dc-west")
	if cond := meta.FindStatusCondition(cached.Status.Conditions, ReadyCondition); cond == nil || cond.Status != metav1.ConditionFalse ||
		!cond.LastTransitionTime.Time.Equal(clock.Now()) || !cached.Status.LastProbeTime.Time.Equal(clock.Now()) {
		t.Errorf("after a failed probe: %+v", cached.Status)
	}
	clock.Step(10 * time.Second)
	probe(t, c, client)
	if n := statusWrites(client); n != 3 {
		t.Errorf("a datacenter back: %d writes, want 3", n)
	}

	// Nothing changes for lastProbeRefresh: lastProbeTime is written again, once.
	written := clock.Now()
	for range int(lastProbeRefresh/(10*time.Second)) - 1 {
		clock.Step(10 * time.Second)
		probe(t, c, client)
	}
	if n := statusWrites(client); n != 3 {
		t.Errorf("%d writes before lastProbeTime grew stale, want 3", n)
	}
	clock.Step(10 * time.Second)
	probe(t, c, client)
	cached, _ = c.dcs.Get("dc-west")
	if n := statusWrites(client); n != 4 || !cached.Status.LastProbeTime.Time.Equal(clock.Now()) ||
		clock.Now().Sub(written) != lastProbeRefresh {
		t.Errorf("after %s unchanged: %d writes (want 4), lastProbeTime %v (want %v)", clock.Now().Sub(written), n,
			cached.Status.LastProbeTime, clock.Now())
	}
}

// Missing or refused credentials show in Ready, naming the file.
func TestProbeReportsCredentials(t *testing.T) {
	const file = "/etc/stargate/datacenters/dc-west"
	c, client, dc, _ := newProber(t)
	for _, tc := range []struct {
		name   string
		fail   func()
		reason string
		up     float64
	}{
		{"missing", func() { dc.FailNext(fake.MethodHealth, fake.CredentialsMissing(file)) }, ReasonCredentialsMissing, 0},
		{"refused", func() { dc.FailNext(fake.MethodFindJob, fake.Unauthorized(file)) }, ReasonCredentialsRejected, 1},
		{"fixed", func() {}, ReasonReachable, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fail()
			probe(t, c, client)
			cached, _ := c.dcs.Get("dc-west")
			cond := meta.FindStatusCondition(cached.Status.Conditions, ReadyCondition)
			if cond == nil || cond.Reason != tc.reason || (tc.reason != ReasonReachable && (cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, file))) {
				t.Errorf("Ready: %+v, want reason %s naming %s", cond, tc.reason, file)
			}
			if up, _ := testutil.GetGaugeMetricValue(metrics.DatacenterUp.WithLabelValues("dc-west")); up != tc.up {
				t.Errorf("stargate_datacenter_up = %v, want %v", up, tc.up)
			}
		})
	}
	// The credentials check asks for a key no Job uses: it starts nothing.
	if dc.Calls(fake.MethodSubmit) != 0 {
		t.Error("a probe submitted a job")
	}
}
