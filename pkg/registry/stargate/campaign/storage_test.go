package campaign

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistrytest "k8s.io/apiserver/pkg/registry/generic/testing"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/ptr"
	smdfieldpath "sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	registry "stargate.io/stargate/pkg/registry/stargate"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

// validCampaign is a reboot Campaign as the server stores it: defaulted.
func validCampaign() *stargate.Campaign {
	return &stargate.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "reboot-gpu"},
		Spec: stargate.CampaignSpec{
			Operation:        stargate.OperationReboot,
			HardwareSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "gpu"}},
			JobTemplate:      stargate.CampaignJobTemplate{BackoffLimit: ptr.To[int32](3)},
			Waves:            []stargate.CampaignWave{{Size: intstr.FromInt32(1)}, {Size: intstr.FromString("50%")}},
			MaxUnavailable:   stargate.CampaignMaxUnavailable{Global: ptr.To(intstr.FromString("10%"))},
			FailurePolicy: stargate.CampaignFailurePolicy{
				MaxFailures: stargate.CampaignFailureBudgets{Global: ptr.To(intstr.FromString("5%"))},
				Action:      stargate.CampaignFailurePause, InFlight: stargate.CampaignInFlightFinish,
			},
		},
	}
}

func newStorage(t *testing.T) *Storage {
	scheme := registrytest.Scheme()
	s, err := NewStorage(scheme, registrytest.RESTOptionsGetter(t, scheme))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Campaign.Store.DestroyFunc)
	return s
}

func newTester(t *testing.T, s *Storage) *genericregistrytest.Tester {
	return genericregistrytest.New(t, s.Campaign.Store).ClusterScope()
}

func TestStrategy(t *testing.T) {
	ctx := context.Background()
	c := validCampaign()
	c.Status = stargate.CampaignStatus{Phase: stargate.CampaignComplete, Counts: stargate.CampaignCounts{Targets: 9}}
	Strategy(nil).PrepareForCreate(ctx, c)
	if c.Status.Phase != "" || c.Status.Counts.Targets != 0 || c.Generation != 1 {
		t.Errorf("after create: status %+v generation %d; want an empty status and generation 1", c.Status, c.Generation)
	}
	if Strategy(nil).NamespaceScoped() {
		t.Error("Campaigns are cluster-scoped")
	}

	c.Status.Phase = stargate.CampaignRunning
	paused := c.DeepCopy()
	paused.Spec.Paused = true
	paused.Status = stargate.CampaignStatus{}
	Strategy(nil).PrepareForUpdate(ctx, paused, c)
	if paused.Status.Phase != stargate.CampaignRunning || paused.Generation != 2 {
		t.Errorf("pause: status %+v generation %d; want Running kept and generation 2", paused.Status, paused.Generation)
	}
	labelled := c.DeepCopy()
	labelled.Labels = map[string]string{"team": "os"}
	Strategy(nil).PrepareForUpdate(ctx, labelled, c)
	if labelled.Generation != 1 {
		t.Errorf("a label bumped the generation to %d", labelled.Generation)
	}

	status := c.DeepCopy()
	status.ResourceVersion, c.ResourceVersion = "5", "5"
	status.Spec.Operation = stargate.OperationPowerOff
	status.Labels = map[string]string{"forged": "true"}
	status.Status.Counts.Targets = 4
	StatusStrategy(nil).PrepareForUpdate(ctx, status, c)
	if status.Spec.Operation != stargate.OperationReboot || status.Labels["forged"] != "" || status.Status.Counts.Targets != 4 {
		t.Errorf("status write: spec %+v labels %v status %+v", status.Spec, status.Labels, status.Status)
	}
	if errs := StatusStrategy(nil).ValidateUpdate(ctx, status, c); len(errs) != 0 {
		t.Errorf("unexpected errors %v", errs)
	}

	main, st := Strategy(nil).GetResetFields(), StatusStrategy(nil).GetResetFields()
	gv := "stargate.io/v1alpha1"
	if set := main[smdfieldpath.APIVersion(gv)]; set == nil || !strings.Contains(set.String(), ".status") {
		t.Errorf("the main resource must reset status: %v", set)
	}
	if set := st[smdfieldpath.APIVersion(gv)]; set == nil || !strings.Contains(set.String(), ".spec") {
		t.Errorf("the status subresource must reset spec: %v", set)
	}
}

func TestSelectableFieldsMatchTheScheme(t *testing.T) {
	got := SelectableFields(validCampaign())
	for _, f := range v1alpha1.SelectableFields("Campaign") {
		if !got.Has(f) {
			t.Errorf("field selector %s is accepted by the scheme but not served", f)
		}
	}
	if got.Has("metadata.namespace") {
		t.Error("a cluster-scoped kind has no metadata.namespace field")
	}
	if got.Get("status.phase") != "Pending" {
		t.Errorf("a new Campaign's status.phase selects as %q, want Pending as printed", got.Get("status.phase"))
	}
}

func TestCreate(t *testing.T) {
	invalid := validCampaign()
	invalid.Spec.MaxUnavailable.Global = ptr.To(intstr.FromInt32(0))
	newTester(t, newStorage(t)).TestCreate(validCampaign(), invalid)
}

func TestUpdate(t *testing.T) {
	newTester(t, newStorage(t)).TestUpdate(validCampaign(),
		func(obj runtime.Object) runtime.Object {
			obj.(*stargate.Campaign).Spec.Paused = true
			return obj
		},
		func(obj runtime.Object) runtime.Object {
			obj.(*stargate.Campaign).Spec.Operation = stargate.OperationPowerOff
			return obj
		})
}

func TestDeleteGetListWatch(t *testing.T) {
	s := newStorage(t)
	newTester(t, s).ReturnDeletedObject().TestDelete(validCampaign())
	newTester(t, s).TestGet(validCampaign())
	newTester(t, s).TestList(validCampaign())
	newTester(t, s).TestWatch(validCampaign(),
		[]labels.Set{{}}, []labels.Set{{"team": "storage"}},
		[]fields.Set{{"metadata.name": "reboot-gpu"}, {"spec.operation": "reboot"}, {"status.phase": "Pending"}},
		[]fields.Set{{"spec.operation": "repave"}, {"status.phase": "Running"}})
}

// TestUpdateRules runs the update rules through real storage: refusals are
// 422 naming the field, and what operators do to a running Campaign works.
func TestUpdateRules(t *testing.T) {
	s := newStorage(t)
	ctx := clusterScope()
	obj, err := s.Campaign.Create(ctx, validCampaign(), rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := obj.(*stargate.Campaign)
	c = updateStatus(t, s, c, func(st *stargate.CampaignStatus) {
		st.Phase, st.StartTime, st.CurrentWave = stargate.CampaignRunning, &metav1.Time{Time: time.Now()}, 1
	})

	update := func(change func(*stargate.Campaign)) (*stargate.Campaign, error) {
		next := c.DeepCopy()
		change(next)
		obj, _, err := s.Campaign.Update(ctx, next.Name, rest.DefaultUpdatedObjectInfo(next),
			rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
		if err != nil {
			return nil, err
		}
		return obj.(*stargate.Campaign), nil
	}
	for _, tc := range []struct {
		name   string
		change func(*stargate.Campaign)
		field  string
	}{
		{"operation", func(c *stargate.Campaign) { c.Spec.Operation = stargate.OperationPowerOff }, "spec.operation"},
		{"hardware selector", func(c *stargate.Campaign) { c.Spec.HardwareSelector = nil }, "spec.hardwareSelector"},
		{"waves of a started Campaign", func(c *stargate.Campaign) { c.Spec.Waves = c.Spec.Waves[:1] }, "spec.waves"},
		{"a zero limit", func(c *stargate.Campaign) { c.Spec.MaxUnavailable.Global = ptr.To(intstr.FromString("0%")) }, "spec.maxUnavailable.global"},
	} {
		_, err := update(tc.change)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: want 422 naming %s, got %v", tc.name, tc.field, err)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*stargate.Campaign)
	}{
		{"pause", func(c *stargate.Campaign) { c.Spec.Paused = true }},
		{"resume", func(c *stargate.Campaign) { c.Spec.Paused = false }},
		{"approve", func(c *stargate.Campaign) { c.Spec.ApprovedWaves = 2 }},
		{"raise a limit", func(c *stargate.Campaign) { c.Spec.MaxUnavailable.Global = ptr.To(intstr.FromString("30%")) }},
		{"cancel", func(c *stargate.Campaign) { c.Spec.Cancel = true }},
	} {
		before := c.Generation
		next, err := update(tc.change)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if next.Generation != before+1 || next.Status.Phase != stargate.CampaignRunning {
			t.Errorf("%s: generation %d (was %d), phase %q; want the generation bumped and the status kept", tc.name, next.Generation, before, next.Status.Phase)
		}
		c = next
	}
	if _, err := update(func(c *stargate.Campaign) { c.Spec.Cancel = false }); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.cancel") {
		t.Errorf("un-cancel: want 422 naming spec.cancel, got %v", err)
	}
	if _, err := update(func(c *stargate.Campaign) { c.Spec.ApprovedWaves = 1 }); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.approvedWaves") {
		t.Errorf("withdrawn approval: want 422 naming spec.approvedWaves, got %v", err)
	}
}

// TestStatusOnlyWrites checks that the main resource cannot write status and
// the status subresource cannot write the spec, on real storage.
func TestStatusOnlyWrites(t *testing.T) {
	s := newStorage(t)
	ctx := clusterScope()
	forged := validCampaign()
	forged.Status.Phase = stargate.CampaignComplete
	obj, err := s.Campaign.Create(ctx, forged, nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := obj.(*stargate.Campaign)
	if c.Status.Phase != "" {
		t.Fatalf("create kept status %+v", c.Status)
	}

	c = updateStatus(t, s, c, func(st *stargate.CampaignStatus) {
		st.Phase, st.Counts = stargate.CampaignRunning, stargate.CampaignCounts{Targets: 3, Pending: 3}
	})
	if c.Status.Phase != stargate.CampaignRunning || c.Generation != 1 {
		t.Fatalf("status write: %+v generation %d", c.Status, c.Generation)
	}

	spec := c.DeepCopy()
	spec.Spec.Paused = true
	spec.Status.Phase = stargate.CampaignComplete
	obj, _, err = s.Campaign.Update(ctx, c.Name, rest.DefaultUpdatedObjectInfo(spec), nil, nil, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*stargate.Campaign); !got.Spec.Paused || got.Status.Phase != stargate.CampaignRunning {
		t.Errorf("an update of the main resource: paused %v phase %q; want paused and status kept", got.Spec.Paused, got.Status.Phase)
	}
	c = obj.(*stargate.Campaign)

	sneaky := c.DeepCopy()
	sneaky.Spec.Operation = stargate.OperationPowerOff
	sneaky.Status.Counts.Running, sneaky.Status.Counts.Pending = 1, 2
	obj, _, err = s.Status.Update(ctx, c.Name, rest.DefaultUpdatedObjectInfo(sneaky), nil, nil, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*stargate.Campaign); got.Spec.Operation != stargate.OperationReboot || got.Status.Counts.Running != 1 {
		t.Errorf("a status write changed the spec or lost the status: %+v %+v", got.Spec, got.Status)
	}

	bad := obj.(*stargate.Campaign).DeepCopy()
	bad.Status.Counts.Failed = -1
	_, _, err = s.Status.Update(ctx, c.Name, rest.DefaultUpdatedObjectInfo(bad), nil, nil, false, &metav1.UpdateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "status.counts.failed") {
		t.Errorf("negative count: want 422 naming status.counts.failed, got %v", err)
	}
}

// TestFieldSelectors lists Campaigns by operation and by phase, Pending
// included before the controller wrote one.
func TestFieldSelectors(t *testing.T) {
	s := newStorage(t)
	ctx := clusterScope()
	for _, name := range []string{"reboot-a", "reboot-b"} {
		c := validCampaign()
		c.Name = name
		if _, err := s.Campaign.Create(ctx, c, nil, &metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	off := validCampaign()
	off.Name, off.Spec.Operation = "off", stargate.OperationPowerOff
	obj, err := s.Campaign.Create(ctx, off, nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updateStatus(t, s, obj.(*stargate.Campaign), func(st *stargate.CampaignStatus) { st.Phase = stargate.CampaignPaused })

	for selector, want := range map[string]string{
		"spec.operation=reboot":    "reboot-a,reboot-b",
		"spec.operation=power-off": "off",
		"status.phase=Pending":     "reboot-a,reboot-b",
		"status.phase=Paused":      "off",
		"status.phase!=Pending":    "off",
		"metadata.name=reboot-b":   "reboot-b",
	} {
		sel, err := fields.ParseSelector(selector)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := s.Campaign.List(ctx, &metainternalversion.ListOptions{FieldSelector: sel})
		if err != nil {
			t.Fatalf("%s: %v", selector, err)
		}
		var names []string
		for _, c := range obj.(*stargate.CampaignList).Items {
			names = append(names, c.Name)
		}
		if got := strings.Join(names, ","); got != want {
			t.Errorf("%s: %s, want %s", selector, got, want)
		}
	}
}

func TestDiscovery(t *testing.T) {
	s := newStorage(t)
	if got := s.Campaign.ShortNames(); len(got) != 1 || got[0] != "camp" {
		t.Errorf("short names %v", got)
	}
	if got := s.Campaign.Categories(); len(got) != 1 || got[0] != registry.Category {
		t.Errorf("categories %v", got)
	}
	if got := s.Campaign.GetSingularName(); got != "campaign" {
		t.Errorf("singular %q", got)
	}
}

func TestTableColumns(t *testing.T) {
	c := validCampaign()
	c.CreationTimestamp = metav1.NewTime(time.Now().Add(-5 * time.Hour))
	table, err := tableConvertor.ConvertToTable(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := registrytest.ColumnNames(table); got != "Name,Operation,Targets,Done,Failed,Wave,Phase,Age,Template,Running,Skipped" {
		t.Errorf("columns %s", got)
	}
	for i, col := range table.ColumnDefinitions {
		if wide := i >= 8; (col.Priority == 1) != wide {
			t.Errorf("column %s has priority %d", col.Name, col.Priority)
		}
	}
	if cells := table.Rows[0].Cells; cells[1] != "reboot" || cells[2] != int64(0) || cells[5] != "-" || cells[6] != "Pending" || cells[7] != "5h" {
		t.Errorf("a new Campaign's row %v", cells)
	}

	c.Spec.Operation, c.Spec.TemplateRef = stargate.OperationRepave, &stargate.LocalObjectReference{Name: "os-2-0-0"}
	c.Status = stargate.CampaignStatus{
		Phase: stargate.CampaignRunning, StartTime: &metav1.Time{Time: time.Now()}, CurrentWave: 2,
		Counts: stargate.CampaignCounts{Targets: 100, Skipped: 10, Pending: 50, Running: 5, Succeeded: 30, Failed: 3, Cancelled: 2},
		Plan:   make([]stargate.CampaignWavePlan, 5),
	}
	table, err = tableConvertor.ConvertToTable(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []interface{}{"reboot-gpu", "repave", int64(100), int64(45), int64(3), "2/5", "Running", "5h", "os-2-0-0", int64(5), int64(10)}
	for i, cell := range table.Rows[0].Cells {
		if cell != want[i] {
			t.Errorf("%s: %v, want %v", table.ColumnDefinitions[i].Name, cell, want[i])
		}
	}
}

// clusterScope is the context of a request to a cluster-scoped resource.
func clusterScope() context.Context {
	return genericapirequest.WithNamespace(context.Background(), metav1.NamespaceNone)
}

func updateStatus(t *testing.T, s *Storage, c *stargate.Campaign, change func(*stargate.CampaignStatus)) *stargate.Campaign {
	t.Helper()
	next := c.DeepCopy()
	change(&next.Status)
	obj, _, err := s.Status.Update(clusterScope(), c.Name, rest.DefaultUpdatedObjectInfo(next),
		rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*stargate.Campaign)
}
