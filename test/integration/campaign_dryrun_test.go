package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// TestCampaignDryRunShowsThePlan: three datacenters with labelled Hardware;
// a server-side dry run of a Campaign answers with its plan (members per
// wave and datacenter, skipped ones) and stores nothing; once created, its
// operation cannot change.
func TestCampaignDryRunShowsThePlan(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	for _, dc := range []struct{ name, region string }{{"dc-a", "eu"}, {"dc-b", "eu"}, {"dc-c", "us"}} {
		if _, err := c.Datacenters().Create(ctx, &v1alpha1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: dc.name, Labels: map[string]string{"region": dc.region}},
			Spec:       v1alpha1.DatacenterSpec{Endpoint: "https://" + dc.name + ".example"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Templates(dc.name).Create(ctx, &v1alpha1.Template{
			ObjectMeta: metav1.ObjectMeta{Name: "os-2", Namespace: dc.name},
			Spec:       v1alpha1.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/os-2.img"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Six servers on racks r1..r3, the first of them already at 2.0.0.
		for i := range 6 {
			name := fmt.Sprintf("%s-server-%d", dc.name, i)
			hw := hardware(name, fmt.Sprintf("aa:bb:cc:%02x:00:%02x", dc.name[3], i), fmt.Sprintf("10.%d.0.%d", dc.name[3], i+1))
			hw.Namespace = dc.name
			hw.Labels = map[string]string{"topology.stargate.io/rack": fmt.Sprintf("r%d", i%3+1), "pool": "gpu"}
			created, err := c.Hardwares(dc.name).Create(ctx, hw, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				created.Status.CurrentOS = "2.0.0"
				if _, err := c.Hardwares(dc.name).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	camp := &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-rollout"},
		Spec: v1alpha1.CampaignSpec{
			Operation:          v1alpha1.OperationRepave,
			TemplateRef:        &v1alpha1.LocalObjectReference{Name: "os-2"},
			DatacenterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
			HardwareSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "gpu"}},
			Waves: []v1alpha1.CampaignWave{
				{Size: intstr.FromInt32(2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"topology.stargate.io/rack": "r2"}}},
				{Size: intstr.FromString("25%"), RequireApproval: true},
			},
			MaxUnavailable:     v1alpha1.CampaignMaxUnavailable{PerFailureDomain: ptr.To(intstr.FromInt32(1))},
			FailureDomainLabel: "topology.stargate.io/rack",
		},
	}
	got, err := c.Campaigns().Create(ctx, camp, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	st := got.Status
	// dc-a and dc-b: 12 servers, 2 already up to date, 10 members.
	if st.Counts != (v1alpha1.CampaignCounts{Targets: 12, Skipped: 2, Pending: 10}) {
		t.Errorf("counts %+v", st.Counts)
	}
	if len(st.Datacenters) != 2 || st.Datacenters[0].Name != "dc-a" || st.Datacenters[1].Name != "dc-b" ||
		st.Datacenters[0].Counts != (v1alpha1.CampaignCounts{Targets: 6, Skipped: 1, Pending: 5}) {
		t.Errorf("datacenters %+v", st.Datacenters)
	}
	// Wave 1: 2 servers of rack r2, one per datacenter; then 25% of 10 = 2 at a time.
	if len(st.Plan) != 5 {
		t.Fatalf("plan of %d waves, want 5 (2, then 2+2+2+2): %+v", len(st.Plan), st.Plan)
	}
	w1 := st.Plan[0]
	if w1.Number != 1 || w1.Members != 2 || len(w1.Datacenters) != 2 || w1.Datacenters[0].Members != 1 || len(w1.FirstMembers) != 2 {
		t.Errorf("wave 1 %+v", w1)
	}
	for _, m := range w1.FirstMembers {
		// r2 holds servers 1 and 4 of each datacenter.
		if !strings.HasSuffix(m, "-server-1") && !strings.HasSuffix(m, "-server-4") {
			t.Errorf("wave 1 member %s is not on rack r2", m)
		}
	}
	for i, w := range st.Plan[1:] {
		if w.Number != int32(i+2) || w.Members != 2 {
			t.Errorf("wave %d: %+v", i+2, w)
		}
	}
	if cond := meta.FindStatusCondition(st.Conditions, v1alpha1.CampaignConditionValidated); cond == nil || cond.Status != metav1.ConditionTrue {
		t.Errorf("Validated %+v", cond)
	}
	if _, err := c.Campaigns().Get(ctx, camp.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the dry run stored the Campaign: %v", err)
	}

	// Created for real: no plan until the controller starts it, and its
	// operation is fixed.
	created, err := c.Campaigns().Create(ctx, camp, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.Status.Plan) != 0 || created.Spec.FailurePolicy.Action != v1alpha1.CampaignFailurePause {
		t.Errorf("created: status %+v, failurePolicy %+v (defaults expected)", created.Status, created.Spec.FailurePolicy)
	}
	created.Spec.Operation, created.Spec.TemplateRef, created.Spec.SkipUpToDate = v1alpha1.OperationReboot, nil, nil
	_, err = c.Campaigns().Update(ctx, created, metav1.UpdateOptions{})
	assertInvalid(t, err, "spec.operation", "spec.templateRef", "spec.skipUpToDate")
}
