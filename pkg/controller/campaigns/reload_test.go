package campaigns

import (
	"context"
	"fmt"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// A release that fails once (a 503) is tried again on the next sync.
func TestFailedReleaseIsRetried(t *testing.T) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot,
		MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: ptr.To(intstr.FromInt32(2))}}, "hw-1", "hw-2")
	for range 2 {
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	jobs := r.jobs()
	if len(jobs) != 2 {
		t.Fatalf("jobs %d", len(jobs))
	}
	fail := true
	r.client.PrependReactor("update", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "" && fail {
			fail = false
			return true, nil, apierrors.NewServiceUnavailable("etcd leader changed")
		}
		return false, nil, nil
	})
	for i := range jobs {
		job := jobs[i]
		job.Status.Phase = v1alpha1.JobSucceeded
		r.client.StargateV1alpha1().Jobs("dc-a").UpdateStatus(context.TODO(), &job, metav1.UpdateOptions{})
		r.c.onJob(&job, true)
	}
	t.Logf("sync: %v", r.sync())
	for range 5 {
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	camp := r.refresh()
	for _, j := range r.jobs() {
		if slices.Contains(j.Finalizers, v1alpha1.CampaignFinalizer) {
			t.Errorf("Job %s keeps %s after 5 more syncs; campaign phase %s counts %+v", j.Name, v1alpha1.CampaignFinalizer, camp.Status.Phase, camp.Status.Counts)
		}
	}
}

// A member whose Job just failed still counts as unavailable after the
// progress is reloaded (a failed ledger write).
func TestJustFailedMemberCountsAcrossAReload(t *testing.T) {
	for _, control := range []bool{true, false} {
		t.Run(fmt.Sprint("control=", control), func(t *testing.T) { failedRecentlyCase(t, control) })
	}
}

func failedRecentlyCase(t *testing.T, control bool) {
	r := newRig(t, v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot,
		MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: ptr.To(intstr.FromInt32(2))},
		FailurePolicy:  v1alpha1.CampaignFailurePolicy{MaxFailures: v1alpha1.CampaignFailureBudgets{Global: ptr.To(intstr.FromInt32(10))}}},
		"hw-1", "hw-2", "hw-3", "hw-4")
	for range 2 {
		if err := r.sync(); err != nil {
			t.Fatal(err)
		}
	}
	jobs := r.jobs()
	if len(jobs) != 2 {
		t.Fatalf("jobs %d", len(jobs))
	}
	failedHW := jobs[0].Spec.HardwareRef.Name
	jobs[0].Status.Phase, jobs[0].Status.DCJobID = v1alpha1.JobFailed, "dc-1"
	jobs[1].Status.Phase = v1alpha1.JobSucceeded
	for i := range jobs {
		r.client.StargateV1alpha1().Jobs("dc-a").UpdateStatus(context.TODO(), &jobs[i], metav1.UpdateOptions{})
		r.c.onJob(&jobs[i], true)
	}
	// observe's ledger write passes; act's (the next member started) fails once.
	calls := 0
	r.c.opts.Leading = func(context.Context, string) error {
		calls++
		if calls == 2 && !control {
			return fmt.Errorf("etcd: transient")
		}
		return nil
	}
	t.Logf("sync: %v", r.sync())
	if err := r.sync(); err != nil {
		t.Fatal(err)
	}
	// The Hardware-in-error event arrives now.
	r.f.Stargate().V1alpha1().Hardwares().Informer().GetIndexer().Add(&v1alpha1.Hardware{
		ObjectMeta: metav1.ObjectMeta{Name: failedHW, Namespace: "dc-a"}, Status: v1alpha1.HardwareStatus{State: v1alpha1.HardwareStateError}})
	u := r.c.unavailable(r.d.progress).u
	t.Logf("jobs %d, unavailable %d", len(r.jobs()), u.Total)
	if u.Total > 2 {
		t.Errorf("maxUnavailable.global=2 exceeded: %d unavailable (%s in error + %d running)", u.Total, failedHW, r.d.progress.started)
	}
}
