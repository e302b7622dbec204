package campaign

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"

	"stargate.io/stargate/pkg/apis/stargate"
	registry "stargate.io/stargate/pkg/registry/stargate"
)

// Storage is every REST endpoint of Campaigns.
type Storage struct {
	Campaign *registry.REST
	Status   *registry.StatusREST
}

// NewStorage returns the storage of campaigns and campaigns/status.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter) (*Storage, error) {
	strategy := Strategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &stargate.Campaign{} },
		NewListFunc:               func() runtime.Object { return &stargate.CampaignList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  stargate.Resource("campaigns"),
		SingularQualifiedResource: stargate.Resource("campaign"),

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
		Campaign: registry.NewREST(store, "camp"),
		Status:   registry.NewStatusREST(store, StatusStrategy(scheme)),
	}, nil
}
