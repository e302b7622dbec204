package datacenter

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"

	"stargate.io/stargate/pkg/apis/stargate"
	registry "stargate.io/stargate/pkg/registry/stargate"
)

// Storage is every REST endpoint of Datacenters.
type Storage struct {
	Datacenter *registry.REST
	Status     *registry.StatusREST
}

// NewStorage returns the storage of datacenters and datacenters/status.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter) (*Storage, error) {
	strategy := Strategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &stargate.Datacenter{} },
		NewListFunc:               func() runtime.Object { return &stargate.DatacenterList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  stargate.Resource("datacenters"),
		SingularQualifiedResource: stargate.Resource("datacenter"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}); err != nil {
		return nil, err
	}
	return &Storage{
		Datacenter: registry.NewREST(store, "dc"),
		Status:     registry.NewStatusREST(store, StatusStrategy(scheme)),
	}, nil
}

var tableConvertor = registry.TableConvertor[*stargate.Datacenter]{Columns: []registry.Column[*stargate.Datacenter]{
	registry.NameColumn[*stargate.Datacenter](),
	registry.StringColumn("Endpoint", "The datacenter API's URL.", 0,
		func(dc *stargate.Datacenter) string { return dc.Spec.Endpoint }),
	registry.StringColumn("Ready", "Whether the datacenter API answered its last probe.", 0, readyStatus),
	{
		Definition: metav1.TableColumnDefinition{Name: "Active", Type: "integer", Description: "Jobs running in the datacenter."},
		Cell:       func(dc *stargate.Datacenter) interface{} { return int64(dc.Status.ActiveJobs) },
	},
	registry.StringColumn("Paused", "Whether new Jobs are held back.", 0,
		func(dc *stargate.Datacenter) string { return fmt.Sprint(dc.Spec.Paused) }),
	registry.AgeColumn[*stargate.Datacenter](0),
}}

// readyStatus prints the Ready condition's status, or Unknown before the first probe.
func readyStatus(dc *stargate.Datacenter) string {
	if c := meta.FindStatusCondition(dc.Status.Conditions, "Ready"); c != nil {
		return string(c.Status)
	}
	return string(metav1.ConditionUnknown)
}
