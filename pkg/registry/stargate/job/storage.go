package job

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"

	"stargate.io/stargate/pkg/apis/stargate"
	registry "stargate.io/stargate/pkg/registry/stargate"
	"stargate.io/stargate/pkg/registry/stargate/commitbound"
)

// Storage is every REST endpoint of Jobs.
type Storage struct {
	Job    *registry.REST
	Status *registry.StatusREST
}

// NewStorage returns the storage of jobs and jobs/status. Each install sets
// hooks on the store (the server installs the Hardware lock this way) before
// the status subresource copies it, so status writes run them too.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, install ...func(*genericregistry.Store) error) (*Storage, error) {
	strategy := Strategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &stargate.Job{} },
		NewListFunc:               func() runtime.Object { return &stargate.JobList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  stargate.Resource("jobs"),
		SingularQualifiedResource: stargate.Resource("job"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	// Writes made under a claim (an identity, a lock) are bounded by it.
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: commitbound.Decorate(optsGetter), AttrFunc: GetAttrs}); err != nil {
		return nil, err
	}
	for _, i := range install {
		if err := i(store); err != nil {
			return nil, err
		}
	}
	return &Storage{
		Job:    registry.NewREST(store, "sjob"),
		Status: registry.NewStatusREST(store, StatusStrategy(scheme)),
	}, nil
}
