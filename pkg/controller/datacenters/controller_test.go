package datacenters

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	running := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-west", Name: "j1", UID: "u1"},
		Status: v1alpha1.JobStatus{Phase: v1alpha1.JobRunning}}
	done := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-west", Name: "j2", UID: "u2"},
		Status: v1alpha1.JobStatus{Phase: v1alpha1.JobSucceeded}}
	client := clientfake.NewClientset(&v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-west"},
		Spec: v1alpha1.DatacenterSpec{Endpoint: "https://dc-west.example"}}, running, done)
	factory := informers.NewSharedInformerFactory(client, 0)
	v1 := factory.Stargate().V1alpha1()
	if err := controller.AddJobIndexers(v1.Jobs().Informer()); err != nil {
		t.Fatal(err)
	}
	dc := fake.New()
	clock := testingclock.NewFakeClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	c, err := New(client, v1.Datacenters(), v1.Jobs(), controller.NewRunningJobs(v1.Jobs().Informer()),
		func(*v1alpha1.Datacenter) (datacenter.Client, error) { return dc, nil }, 10*time.Second, clock)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

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
