package template

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"

	"stargate.io/stargate/pkg/apis/stargate"
	registry "stargate.io/stargate/pkg/registry/stargate"
)

// NewREST returns the storage of templates.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter) (*registry.REST, error) {
	strategy := Strategy(scheme)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &stargate.Template{} },
		NewListFunc:               func() runtime.Object { return &stargate.TemplateList{} },
		PredicateFunc:             Match,
		DefaultQualifiedResource:  stargate.Resource("templates"),
		SingularQualifiedResource: stargate.Resource("template"),

		CreateStrategy: strategy,
		UpdateStrategy: strategy,
		DeleteStrategy: strategy,

		TableConvertor: tableConvertor,
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}); err != nil {
		return nil, err
	}
	return registry.NewREST(store, "tmpl"), nil
}

var tableConvertor = registry.TableConvertor[*stargate.Template]{Columns: []registry.Column[*stargate.Template]{
	registry.NameColumn[*stargate.Template](),
	registry.StringColumn("OS-Version", "The OS version the image installs.", 0,
		func(t *stargate.Template) string { return t.Spec.OSVersion }),
	registry.StringColumn("Image", "The OS image URL.", 0,
		func(t *stargate.Template) string { return t.Spec.OSImage }),
	registry.AgeColumn[*stargate.Template](0),
}}
