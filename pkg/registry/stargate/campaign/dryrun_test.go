package campaign

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	planning "stargate.io/stargate/pkg/campaign"
	"stargate.io/stargate/pkg/registry/stargate/datacenter"
	"stargate.io/stargate/pkg/registry/stargate/hardware"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
	"stargate.io/stargate/pkg/registry/stargate/template"
)

// fleet is every store a dry run reads, on one embedded etcd.
type fleet struct {
	campaigns *Storage
	plans     *PlanningREST
	dcs       *datacenter.Storage
	templates rest.StandardStorage
	hardware  *hardware.Storage
	lists     *countingLister
	servers   int
}

// countingLister counts the pages read from the Hardware store.
type countingLister struct {
	rest.Lister
	pages int
}

func (l *countingLister) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	l.pages++
	return l.Lister.List(ctx, options)
}

func newFleet(t *testing.T) *fleet {
	scheme := registrytest.Scheme()
	getter := registrytest.RESTOptionsGetter(t, scheme)
	f := &fleet{}
	var err error
	if f.campaigns, err = NewStorage(scheme, getter); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.campaigns.Campaign.Store.DestroyFunc)
	if f.dcs, err = datacenter.NewStorage(scheme, getter); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.dcs.Datacenter.Store.DestroyFunc)
	tmpl, err := template.NewREST(scheme, getter)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tmpl.Store.DestroyFunc)
	f.templates = tmpl
	if f.hardware, err = hardware.NewStorage(scheme, getter); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.hardware.Hardware.Store.DestroyFunc)
	f.lists = &countingLister{Lister: f.hardware.Hardware}
	f.plans = NewPlanningREST(f.campaigns.Campaign, f.dcs.Datacenter, tmpl, f.lists)
	return f
}

func (f *fleet) datacenter(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	dc := &stargate.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: stargate.DatacenterSpec{Endpoint: "https://" + name + ".example"}}
	if _, err := f.dcs.Datacenter.Create(clusterScope(), dc, nil, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (f *fleet) template(t *testing.T, dc, osVersion string) {
	t.Helper()
	tmpl := &stargate.Template{ObjectMeta: metav1.ObjectMeta{Name: "os-2", Namespace: dc},
		Spec: stargate.TemplateSpec{OSVersion: osVersion, OSImage: "https://images.example/os.img"}}
	if _, err := f.templates.Create(genericapirequest.WithNamespace(context.Background(), dc), tmpl, nil, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// server creates Hardware dc/name with labels and, if set, a current OS.
func (f *fleet) server(t *testing.T, dc, name string, labels map[string]string, currentOS string) {
	t.Helper()
	ctx := genericapirequest.WithNamespace(context.Background(), dc)
	n := f.servers
	f.servers++
	hw := &stargate.Hardware{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: dc, Labels: labels},
		Spec: stargate.HardwareSpec{MAC: fmt.Sprintf("aa:bb:cc:dd:%02x:%02x", n/256, n%256), IPv4: fmt.Sprintf("10.0.%d.%d", n/250, n%250+1)}}
	obj, err := f.hardware.Hardware.Create(ctx, hw, nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if currentOS == "" {
		return
	}
	hw = obj.(*stargate.Hardware)
	hw.Status.CurrentOS = currentOS
	if _, _, err := f.hardware.Status.Update(ctx, name, rest.DefaultUpdatedObjectInfo(hw), nil, nil, false, &metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// threeDatacenters: dc-a and dc-b in region eu, dc-c in us; GPU servers on
// racks r1 and r2, one of dc-a's already at 2.0.0, and CPU servers besides.
func threeDatacenters(t *testing.T) *fleet {
	f := newFleet(t)
	for _, dc := range []struct{ name, region string }{{"dc-a", "eu"}, {"dc-b", "eu"}, {"dc-c", "us"}} {
		f.datacenter(t, dc.name, map[string]string{"region": dc.region})
	}
	gpu := func(rack string) map[string]string { return map[string]string{"pool": "gpu", "rack": rack} }
	f.server(t, "dc-a", "a-1", gpu("r1"), "1.0.0")
	f.server(t, "dc-a", "a-2", gpu("r1"), "2.0.0")
	f.server(t, "dc-a", "a-3", gpu("r2"), "")
	f.server(t, "dc-a", "a-4", gpu("r2"), "1.0.0")
	f.server(t, "dc-a", "a-cpu", map[string]string{"pool": "cpu", "rack": "r1"}, "")
	f.server(t, "dc-b", "b-1", gpu("r1"), "")
	f.server(t, "dc-b", "b-2", gpu("r2"), "")
	f.server(t, "dc-b", "b-3", gpu("r2"), "")
	f.server(t, "dc-c", "c-1", gpu("r1"), "")
	f.server(t, "dc-c", "c-2", gpu("r1"), "")
	return f
}

func repaveCampaign() *stargate.Campaign {
	return &stargate.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-rollout"},
		Spec: stargate.CampaignSpec{
			Operation:          stargate.OperationRepave,
			TemplateRef:        &stargate.LocalObjectReference{Name: "os-2"},
			JobTemplate:        stargate.CampaignJobTemplate{BackoffLimit: ptr.To[int32](3)},
			DatacenterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
			HardwareSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "gpu"}},
			SkipUpToDate:       ptr.To(true),
			Waves: []stargate.CampaignWave{
				{Size: intstr.FromInt32(1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "r2"}}},
				{Size: intstr.FromString("50%")},
			},
			MaxUnavailable:     stargate.CampaignMaxUnavailable{PerFailureDomain: ptr.To(intstr.FromInt32(1))},
			FailureDomainLabel: "rack",
			FailurePolicy: stargate.CampaignFailurePolicy{
				MaxFailures: stargate.CampaignFailureBudgets{Global: ptr.To(intstr.FromString("5%"))},
				Action:      stargate.CampaignFailurePause, InFlight: stargate.CampaignInFlightFinish,
			},
		},
	}
}

var dryRun = &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

// wantPlan is the plan pkg/campaign makes of these candidates, as the
// internal status holds it.
func wantPlan(t *testing.T, c *stargate.Campaign, candidates []planning.Candidate, osVersion map[string]string) stargate.CampaignStatus {
	t.Helper()
	var spec v1alpha1.CampaignSpec
	if err := v1alpha1.Convert_stargate_CampaignSpec_To_v1alpha1_CampaignSpec(&c.Spec, &spec, nil); err != nil {
		t.Fatal(err)
	}
	var st v1alpha1.CampaignStatus
	st.Plan, st.Counts, st.Datacenters = planning.NewPlan(&spec, candidates, osVersion).Status()
	var out stargate.CampaignStatus
	if err := v1alpha1.Convert_v1alpha1_CampaignStatus_To_stargate_CampaignStatus(&st, &out, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func gpuCandidate(dc, name, rack, os string) planning.Candidate {
	return planning.Candidate{Datacenter: dc, Name: name, Labels: map[string]string{"pool": "gpu", "rack": rack}, CurrentOS: os}
}

// TestDryRunShowsThePlan: a dry-run create answers with the plan over the
// selected datacenters' selected Hardware, paged, and stores nothing.
func TestDryRunShowsThePlan(t *testing.T) {
	f := threeDatacenters(t)
	for _, dc := range []string{"dc-a", "dc-b", "dc-c"} {
		f.template(t, dc, "2.0.0")
	}
	f.plans.pageSize = 2

	obj, err := f.plans.Create(clusterScope(), repaveCampaign(), rest.ValidateAllObjectFunc, dryRun)
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*stargate.Campaign)

	st := got.Status
	if st.Counts != (stargate.CampaignCounts{Targets: 7, Skipped: 1, Pending: 6}) {
		t.Errorf("counts %+v; want 7 targets (dc-a and dc-b GPU servers), 1 skipped (a-2 at 2.0.0), 6 pending", st.Counts)
	}
	wantDCs := []stargate.CampaignDatacenterStatus{
		{Name: "dc-a", Counts: stargate.CampaignCounts{Targets: 4, Skipped: 1, Pending: 3}},
		{Name: "dc-b", Counts: stargate.CampaignCounts{Targets: 3, Pending: 3}},
	}
	if !apiequality.Semantic.DeepEqual(st.Datacenters, wantDCs) {
		t.Errorf("datacenters %+v, want %+v", st.Datacenters, wantDCs)
	}
	if len(st.Plan) == 0 || st.Plan[0].Number != 1 || st.Plan[0].Members != 1 || len(st.Plan[0].FirstMembers) != 1 ||
		!strings.Contains("dc-a/a-3 dc-a/a-4 dc-b/b-2 dc-b/b-3", st.Plan[0].FirstMembers[0]) {
		t.Errorf("wave 1 should be the canary: one server of rack r2: %+v", st.Plan)
	}
	var members int32
	for _, w := range st.Plan {
		members += w.Members
	}
	if members != 6 {
		t.Errorf("the waves hold %d members, want 6: %+v", members, st.Plan)
	}
	want := wantPlan(t, got, []planning.Candidate{
		gpuCandidate("dc-a", "a-1", "r1", "1.0.0"), gpuCandidate("dc-a", "a-2", "r1", "2.0.0"),
		gpuCandidate("dc-a", "a-3", "r2", ""), gpuCandidate("dc-a", "a-4", "r2", "1.0.0"),
		gpuCandidate("dc-b", "b-1", "r1", ""), gpuCandidate("dc-b", "b-2", "r2", ""), gpuCandidate("dc-b", "b-3", "r2", ""),
	}, map[string]string{"dc-a": "2.0.0", "dc-b": "2.0.0"})
	if !apiequality.Semantic.DeepEqual(st.Plan, want.Plan) {
		t.Errorf("plan %+v, want %+v", st.Plan, want.Plan)
	}
	if st.Phase != stargate.CampaignPending || st.StartTime != nil {
		t.Errorf("phase %q start %v; a dry run starts nothing", st.Phase, st.StartTime)
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.CampaignConditionValidated); c == nil || c.Status != metav1.ConditionTrue ||
		!strings.Contains(c.Message, "6 members in 2 datacenter(s), 1 already up to date") {
		t.Errorf("Validated condition %+v", c)
	}
	// dc-a's 4 GPU servers and dc-b's 3, in pages of 2: at least 2 pages each.
	if f.lists.pages < 4 {
		t.Errorf("read %d pages of Hardware, want at least 4 (2 per datacenter with pages of 2)", f.lists.pages)
	}

	if _, err := f.campaigns.Campaign.Get(clusterScope(), "os-2-rollout", &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a dry run stored the Campaign: %v", err)
	}
	list, err := f.campaigns.Campaign.List(clusterScope(), &metainternalversion.ListOptions{})
	if err != nil || len(list.(*stargate.CampaignList).Items) != 0 {
		t.Errorf("campaigns after a dry run: %v %v", list, err)
	}
}

// TestDryRunNamesMissingTemplates: a selected datacenter without the
// Template is named in Validated=False and left out of the plan.
func TestDryRunNamesMissingTemplates(t *testing.T) {
	f := threeDatacenters(t)
	f.template(t, "dc-a", "2.0.0")
	f.template(t, "dc-c", "2.0.0")

	obj, err := f.plans.Create(clusterScope(), repaveCampaign(), rest.ValidateAllObjectFunc, dryRun)
	if err != nil {
		t.Fatal(err)
	}
	st := obj.(*stargate.Campaign).Status
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.CampaignConditionValidated)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "TemplateNotFound" || !strings.Contains(c.Message, "dc-b") || strings.Contains(c.Message, "dc-a") {
		t.Errorf("Validated condition %+v; want False naming dc-b only", c)
	}
	if st.Counts != (stargate.CampaignCounts{Targets: 4, Skipped: 1, Pending: 3}) || len(st.Datacenters) != 1 || st.Datacenters[0].Name != "dc-a" {
		t.Errorf("counts %+v datacenters %+v; want dc-a's alone", st.Counts, st.Datacenters)
	}
}

// TestDryRunOfAReboot: no Template, no skipping; nil selectors select all.
func TestDryRunOfAReboot(t *testing.T) {
	f := threeDatacenters(t)
	c := validCampaign()
	c.Spec.HardwareSelector = nil
	obj, err := f.plans.Create(clusterScope(), c, rest.ValidateAllObjectFunc, dryRun)
	if err != nil {
		t.Fatal(err)
	}
	st := obj.(*stargate.Campaign).Status
	if st.Counts != (stargate.CampaignCounts{Targets: 10, Pending: 10}) || len(st.Datacenters) != 3 {
		t.Errorf("counts %+v datacenters %+v; want every server of the three datacenters", st.Counts, st.Datacenters)
	}
	// Waves of 1 then 50%: 1, 5, 4.
	if len(st.Plan) != 3 || st.Plan[0].Members != 1 || st.Plan[1].Members != 5 || st.Plan[2].Members != 4 {
		t.Errorf("plan %+v", st.Plan)
	}
}

// TestCreateLeavesThePlanToTheController: a real create has an empty status,
// and an invalid dry run is refused before anything is read.
func TestCreateLeavesThePlanToTheController(t *testing.T) {
	f := threeDatacenters(t)
	obj, err := f.plans.Create(clusterScope(), validCampaign(), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := obj.(*stargate.Campaign).Status; !apiequality.Semantic.DeepEqual(st, stargate.CampaignStatus{}) {
		t.Errorf("a real create answered status %+v", st)
	}
	if f.lists.pages != 0 {
		t.Errorf("a real create read %d pages of Hardware", f.lists.pages)
	}

	bad := validCampaign()
	bad.Name = "bad"
	bad.Spec.Waves[0].Size = intstr.FromInt32(0)
	if _, err := f.plans.Create(clusterScope(), bad, rest.ValidateAllObjectFunc, dryRun); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.waves[0].size") {
		t.Errorf("invalid dry run: want 422 naming spec.waves[0].size, got %v", err)
	}
	if f.lists.pages != 0 {
		t.Errorf("an invalid dry run read %d pages of Hardware", f.lists.pages)
	}
}
