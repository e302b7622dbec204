package template

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	genericregistrytest "k8s.io/apiserver/pkg/registry/generic/testing"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	registry "stargate.io/stargate/pkg/registry/stargate"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

func validTemplate() *stargate.Template {
	return &stargate.Template{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-0-0", Namespace: "test"},
		Spec:       stargate.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/ubuntu-22-aks-2.0.0.img"},
	}
}

func newStore(t *testing.T) *registry.REST {
	scheme := registrytest.Scheme()
	r, err := NewREST(scheme, registrytest.RESTOptionsGetter(t, scheme))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Store.DestroyFunc)
	return r
}

func TestStrategy(t *testing.T) {
	ctx := context.Background()
	tm := validTemplate()
	Strategy(nil).PrepareForCreate(ctx, tm)
	if tm.Generation != 1 {
		t.Errorf("generation %d on create", tm.Generation)
	}
	if w := Strategy(nil).WarningsOnCreate(ctx, tm); len(w) != 0 {
		t.Errorf("https image warned: %v", w)
	}
	insecure := validTemplate()
	insecure.Spec.OSImage = "http://mirror.local/img"
	if w := Strategy(nil).WarningsOnCreate(ctx, insecure); len(w) != 1 || !strings.Contains(w[0], "spec.osImage") {
		t.Errorf("want one warning naming spec.osImage, got %v", w)
	}
	updated := tm.DeepCopy()
	updated.Spec.OSVersion = "2.0.1"
	Strategy(nil).PrepareForUpdate(ctx, updated, tm)
	if updated.Generation != 2 {
		t.Errorf("generation %d after a spec change", updated.Generation)
	}
	if got := SelectableFields(tm); !got.Has(v1alpha1.SelectableFields("Template")[0]) {
		t.Errorf("selectable fields %v miss the scheme's", got)
	}
}

func TestCreate(t *testing.T) {
	invalid := validTemplate()
	invalid.Spec.OSImage = "ftp://x/y"
	genericregistrytest.New(t, newStore(t).Store).TestCreate(validTemplate(), invalid)
}

func TestUpdate(t *testing.T) {
	genericregistrytest.New(t, newStore(t).Store).TestUpdate(validTemplate(),
		func(obj runtime.Object) runtime.Object {
			obj.(*stargate.Template).Spec.CloudInit = &stargate.CloudInit{UserData: "#cloud-config\n"}
			return obj
		},
		func(obj runtime.Object) runtime.Object {
			obj.(*stargate.Template).Spec.Checksum = "sha256:short"
			return obj
		})
}

func TestDeleteGetListWatch(t *testing.T) {
	store := newStore(t).Store
	genericregistrytest.New(t, store).ReturnDeletedObject().TestDelete(validTemplate())
	genericregistrytest.New(t, store).TestGet(validTemplate())
	genericregistrytest.New(t, store).TestList(validTemplate())
	genericregistrytest.New(t, store).TestWatch(validTemplate(),
		[]labels.Set{{}}, []labels.Set{{"os": "other"}},
		[]fields.Set{{"metadata.name": "os-2-0-0"}, {"spec.osVersion": "2.0.0"}},
		[]fields.Set{{"spec.osVersion": "3.0.0"}})
}

func TestTableColumns(t *testing.T) {
	table, err := tableConvertor.ConvertToTable(context.Background(), validTemplate(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := registrytest.ColumnNames(table); got != "Name,OS-Version,Image,Age" {
		t.Errorf("columns %s", got)
	}
	if cells := table.Rows[0].Cells; cells[1] != "2.0.0" || !strings.HasPrefix(cells[2].(string), "https://") {
		t.Errorf("row %v", cells)
	}
}
