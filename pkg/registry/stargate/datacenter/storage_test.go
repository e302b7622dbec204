package datacenter

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	genericregistrytest "k8s.io/apiserver/pkg/registry/generic/testing"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

func validDatacenter() *stargate.Datacenter {
	return &stargate.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: "dc-west"},
		Spec:       stargate.DatacenterSpec{Endpoint: "https://dc-west.example", MaxConcurrentJobs: ptr.To[int32](10)},
	}
}

func newTester(t *testing.T) *genericregistrytest.Tester {
	scheme := registrytest.Scheme()
	s, err := NewStorage(scheme, registrytest.RESTOptionsGetter(t, scheme))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Datacenter.Store.DestroyFunc)
	return genericregistrytest.New(t, s.Datacenter.Store).ClusterScope()
}

func TestStrategy(t *testing.T) {
	ctx := context.Background()
	dc := validDatacenter()
	dc.Status.ActiveJobs = 3
	Strategy(nil).PrepareForCreate(ctx, dc)
	if dc.Status.ActiveJobs != 0 || dc.Generation != 1 {
		t.Errorf("create kept status %+v, generation %d", dc.Status, dc.Generation)
	}
	paused := dc.DeepCopy()
	paused.Spec.Paused = true
	Strategy(nil).PrepareForUpdate(ctx, paused, dc)
	if paused.Generation != 2 {
		t.Errorf("pausing left generation at %d", paused.Generation)
	}
	remote := validDatacenter()
	remote.Spec.Endpoint = "http://dc-west.example:8080"
	if w := Strategy(nil).WarningsOnCreate(ctx, remote); len(w) != 1 || !strings.Contains(w[0], "clear text") {
		t.Errorf("want a clear-text token warning, got %v", w)
	}
}

func TestCreate(t *testing.T) {
	invalid := validDatacenter()
	invalid.Spec.Endpoint = "not a url"
	newTester(t).TestCreate(validDatacenter(), invalid)
}

func TestUpdate(t *testing.T) {
	newTester(t).TestUpdate(validDatacenter(),
		func(obj runtime.Object) runtime.Object {
			obj.(*stargate.Datacenter).Spec.Paused = true
			return obj
		},
		func(obj runtime.Object) runtime.Object {
			obj.(*stargate.Datacenter).Spec.MaxConcurrentJobs = ptr.To[int32](0)
			return obj
		})
}

func TestDeleteGetListWatch(t *testing.T) {
	tester := newTester(t)
	tester.ReturnDeletedObject().TestDelete(validDatacenter())
	tester.TestGet(validDatacenter())
	tester.TestList(validDatacenter())
	tester.TestWatch(validDatacenter(),
		[]labels.Set{{}}, []labels.Set{{"region": "mars"}},
		[]fields.Set{{"metadata.name": "dc-west"}}, []fields.Set{{"metadata.name": "dc-east"}})
}

func TestTableColumns(t *testing.T) {
	dc := validDatacenter()
	dc.Status.ActiveJobs = 2
	dc.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Probed"}}
	table, err := tableConvertor.ConvertToTable(context.Background(), dc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := registrytest.ColumnNames(table); got != "Name,Endpoint,Ready,Active,Paused,Age" {
		t.Errorf("columns %s", got)
	}
	if cells := table.Rows[0].Cells; cells[2] != "True" || cells[3] != int64(2) || cells[4] != "false" {
		t.Errorf("row %v", cells)
	}
	if cells := func() []interface{} {
		tb, _ := tableConvertor.ConvertToTable(context.Background(), validDatacenter(), nil)
		return tb.Rows[0].Cells
	}(); cells[2] != "Unknown" {
		t.Errorf("an unprobed datacenter shows Ready=%v, want Unknown", cells[2])
	}
}
