package hardware

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistrytest "k8s.io/apiserver/pkg/registry/generic/testing"
	restpkg "k8s.io/apiserver/pkg/registry/rest"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

func validHardware() *stargate.Hardware {
	return &stargate.Hardware{
		// "test" is the namespace the generic registry tester works in.
		ObjectMeta: metav1.ObjectMeta{Name: "server-001", Namespace: "test"},
		Spec: stargate.HardwareSpec{MAC: "aa:bb:cc:dd:ee:01", IPv4: "10.0.1.5",
			Inventory: stargate.HardwareInventory{SKU: "GPU-8xH100", Location: "rack-5-slot-12"}},
	}
}

func newStorage(t *testing.T) *Storage {
	scheme := registrytest.Scheme()
	s, err := NewStorage(scheme, registrytest.RESTOptionsGetter(t, scheme))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Hardware.Store.DestroyFunc)
	return s
}

func TestStrategyCreateClearsStatusAndNormalizesMAC(t *testing.T) {
	hw := validHardware()
	hw.Spec.MAC = "AA-BB-CC-DD-EE-01"
	hw.Status = stargate.HardwareStatus{State: stargate.HardwareStateReady, ActiveJob: "forged"}
	Strategy(nil).PrepareForCreate(context.Background(), hw)
	if hw.Status.State != "" || hw.Status.ActiveJob != "" {
		t.Errorf("status survived create: %+v", hw.Status)
	}
	if hw.Generation != 1 || hw.Spec.MAC != "aa:bb:cc:dd:ee:01" {
		t.Errorf("generation %d, mac %q; want 1 and the normalised MAC", hw.Generation, hw.Spec.MAC)
	}
	if errs := Strategy(nil).Validate(context.Background(), hw); len(errs) > 0 {
		t.Errorf("normalised object does not validate: %v", errs)
	}
}

func TestStrategyUpdateKeepsStatusAndBumpsGeneration(t *testing.T) {
	old := validHardware()
	old.Generation = 4
	old.Status.State = stargate.HardwareStateReady

	same := old.DeepCopy()
	same.Status.State = stargate.HardwareStateError
	same.Labels = map[string]string{"rack": "5"}
	Strategy(nil).PrepareForUpdate(context.Background(), same, old)
	if same.Status.State != stargate.HardwareStateReady {
		t.Errorf("a spec update changed status to %q", same.Status.State)
	}
	if same.Generation != 4 {
		t.Errorf("generation %d after a metadata-only change; want 4", same.Generation)
	}

	changed := old.DeepCopy()
	changed.Spec.IPv4 = "10.0.1.7"
	Strategy(nil).PrepareForUpdate(context.Background(), changed, old)
	if changed.Generation != 5 {
		t.Errorf("generation %d after a spec change; want 5", changed.Generation)
	}

	respelled := old.DeepCopy()
	respelled.Spec.MAC = "AA:BB:CC:DD:EE:01"
	Strategy(nil).PrepareForUpdate(context.Background(), respelled, old)
	if respelled.Generation != 4 {
		t.Errorf("re-spelling the same MAC bumped the generation to %d", respelled.Generation)
	}
}

func TestStatusStrategyKeepsSpecAndMetadata(t *testing.T) {
	old := validHardware()
	old.ResourceVersion = "7"
	old.Labels = map[string]string{"a": "b"}
	hw := old.DeepCopy()
	hw.Spec.IPv4 = "10.9.9.9"
	hw.Labels = map[string]string{"a": "changed"}
	hw.Status = stargate.HardwareStatus{State: stargate.HardwareStateProvisioning, ActiveJob: "repave-1"}
	StatusStrategy(nil).PrepareForUpdate(context.Background(), hw, old)
	if hw.Spec.IPv4 != "10.0.1.5" || hw.Labels["a"] != "b" {
		t.Errorf("a status write changed spec or labels: %+v %v", hw.Spec, hw.Labels)
	}
	if hw.Status.State != stargate.HardwareStateProvisioning || hw.Status.ActiveJob != "repave-1" {
		t.Errorf("status was not written: %+v", hw.Status)
	}
	if errs := StatusStrategy(nil).ValidateUpdate(context.Background(), hw, old); len(errs) > 0 {
		t.Errorf("unexpected errors: %v", errs)
	}
	hw.Status.State = "melted"
	if errs := StatusStrategy(nil).ValidateUpdate(context.Background(), hw, old); len(errs) != 1 || errs[0].Field != "status.state" {
		t.Errorf("want one error on status.state, got %v", errs)
	}
}

func TestSelectableFieldsMatchTheScheme(t *testing.T) {
	got := SelectableFields(validHardware())
	for _, f := range v1alpha1.SelectableFields("Hardware") {
		if !got.Has(f) {
			t.Errorf("field selector %s is accepted by the scheme but not served by GetAttrs", f)
		}
	}
	if got.Get("spec.mac") != "aa:bb:cc:dd:ee:01" || got.Get("metadata.namespace") != "test" {
		t.Errorf("wrong values: %v", got)
	}
}

func TestCreate(t *testing.T) {
	s := newStorage(t)
	test := genericregistrytest.New(t, s.Hardware.Store)
	invalid := validHardware()
	invalid.Spec.MAC = "nope"
	test.TestCreate(validHardware(), invalid)
}

func TestUpdate(t *testing.T) {
	s := newStorage(t)
	test := genericregistrytest.New(t, s.Hardware.Store)
	test.TestUpdate(validHardware(),
		func(obj runtime.Object) runtime.Object {
			hw := obj.(*stargate.Hardware)
			hw.Spec.Inventory.Location = "rack-6-slot-1"
			return hw
		},
		func(obj runtime.Object) runtime.Object {
			hw := obj.(*stargate.Hardware)
			hw.Spec.IPv4 = "not-an-ip"
			return hw
		})
}

func TestDelete(t *testing.T) {
	s := newStorage(t)
	genericregistrytest.New(t, s.Hardware.Store).ReturnDeletedObject().TestDelete(validHardware())
}

func TestGet(t *testing.T) {
	s := newStorage(t)
	genericregistrytest.New(t, s.Hardware.Store).TestGet(validHardware())
}

func TestList(t *testing.T) {
	s := newStorage(t)
	genericregistrytest.New(t, s.Hardware.Store).TestList(validHardware())
}

func TestWatch(t *testing.T) {
	s := newStorage(t)
	genericregistrytest.New(t, s.Hardware.Store).TestWatch(validHardware(),
		[]labels.Set{{}},
		[]labels.Set{{"rack": "nowhere"}},
		[]fields.Set{{"metadata.name": "server-001"}, {"spec.mac": "aa:bb:cc:dd:ee:01"}, {"spec.ipv4": "10.0.1.5"},
			{"spec.inventory.sku": "GPU-8xH100"}, {"status.state": ""}},
		[]fields.Set{{"metadata.name": "server-002"}, {"spec.mac": "aa:bb:cc:dd:ee:02"}, {"status.state": "ready"}},
	)
}

func TestStatusSubresourceUpdatesOnlyStatus(t *testing.T) {
	s := newStorage(t)
	ctx := genericapirequest.WithNamespace(context.Background(), "test")
	hw := validHardware()
	created, err := s.Hardware.Create(ctx, hw, nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hw = created.(*stargate.Hardware).DeepCopy()
	hw.Spec.IPv4 = "10.0.9.9"
	hw.Status.State = stargate.HardwareStateReady
	hw.Status.CurrentOS = "2.0.0"
	updated, _, err := s.Status.Update(ctx, hw.Name, restpkg.DefaultUpdatedObjectInfo(hw), nil, nil, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := updated.(*stargate.Hardware)
	if got.Status.CurrentOS != "2.0.0" || got.Spec.IPv4 != "10.0.1.5" {
		t.Errorf("status write: got spec.ipv4=%s status.currentOS=%s", got.Spec.IPv4, got.Status.CurrentOS)
	}

	// A spec update through the main resource keeps the stored status.
	hw = got.DeepCopy()
	hw.Status = stargate.HardwareStatus{}
	hw.Spec.Inventory.SKU = "CPU-2x"
	updated, _, err = s.Hardware.Update(ctx, hw.Name, restpkg.DefaultUpdatedObjectInfo(hw), nil, nil, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := updated.(*stargate.Hardware); got.Status.CurrentOS != "2.0.0" || got.Generation != 2 {
		t.Errorf("spec write: status.currentOS=%q generation=%d; want 2.0.0 and 2", got.Status.CurrentOS, got.Generation)
	}
}

func TestTableColumns(t *testing.T) {
	s := newStorage(t)
	hw := validHardware()
	hw.Status = stargate.HardwareStatus{State: stargate.HardwareStateReady, CurrentOS: "2.0.0"}
	table, err := s.Hardware.ConvertToTable(context.Background(), &stargate.HardwareList{Items: []stargate.Hardware{*hw}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names, wide []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			names = append(names, c.Name)
		} else {
			wide = append(wide, c.Name)
		}
	}
	if want := []string{"Name", "State", "OS", "IPv4"}; !slices.Equal(names, want) {
		t.Errorf("columns %v, want the seed's %v", names, want)
	}
	if want := []string{"MAC", "SKU", "Location", "Active-Job", "Age"}; !slices.Equal(wide, want) {
		t.Errorf("wide columns %v, want %v", wide, want)
	}
	if cells := table.Rows[0].Cells; cells[0] != "server-001" || cells[1] != "ready" || cells[2] != "2.0.0" || cells[3] != "10.0.1.5" {
		t.Errorf("row %v", cells)
	}
}
