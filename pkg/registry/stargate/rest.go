// Package stargate holds what the stargate.io registries share: the REST
// wrappers that add short names and categories to a generic store, the status
// subresource, and the table helper behind every kind's printer columns.
package stargate

import (
	"context"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// Category groups every stargate.io kind: `kubectl get stargate` lists them all.
const Category = "stargate"

// REST is a kind's main resource: the generic store plus discovery metadata.
type REST struct {
	*genericregistry.Store
	shortNames []string

	// DeleteGuard, if set, may refuse the deletion of an object. It runs on the
	// stored object inside the store's compare-and-delete loop, so an object
	// that changes after the check is checked again before it goes.
	DeleteGuard rest.ValidateObjectFunc
}

var (
	_ rest.ShortNamesProvider = &REST{}
	_ rest.CategoriesProvider = &REST{}
)

// NewREST wraps a completed store.
func NewREST(store *genericregistry.Store, shortNames ...string) *REST {
	return &REST{Store: store, shortNames: shortNames}
}

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return r.shortNames }

// Categories implements rest.CategoriesProvider.
func (r *REST) Categories() []string { return []string{Category} }

// Delete deletes an object that DeleteGuard allows.
func (r *REST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	return r.Store.Delete(ctx, name, r.guard(deleteValidation), options)
}

// DeleteCollection deletes the objects that DeleteGuard allows, and fails on the others.
func (r *REST) DeleteCollection(ctx context.Context, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions, listOptions *metainternalversion.ListOptions) (runtime.Object, error) {
	return r.Store.DeleteCollection(ctx, r.guard(deleteValidation), options, listOptions)
}

func (r *REST) guard(next rest.ValidateObjectFunc) rest.ValidateObjectFunc {
	if r.DeleteGuard == nil {
		return next
	}
	return func(ctx context.Context, obj runtime.Object) error {
		if err := r.DeleteGuard(ctx, obj); err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		return next(ctx, obj)
	}
}

// StatusREST serves the /status subresource from a copy of the main store
// whose update strategy only lets status change.
type StatusREST struct {
	store *genericregistry.Store
}

var (
	_ rest.StandardStorage      = &REST{}
	_ rest.Patcher              = &StatusREST{}
	_ rest.TableConvertor       = &StatusREST{}
	_ rest.ResetFieldsStrategy  = &StatusREST{}
	_ rest.StorageWithReadiness = &StatusREST{}
)

// NewStatusREST returns the status subresource of store: a shallow copy whose
// update strategy is statusStrategy. The copy shares the main store's etcd
// client and cache, as in kube-aggregator and kube-apiserver.
func NewStatusREST(store *genericregistry.Store, statusStrategy rest.UpdateResetFieldsStrategy) *StatusREST {
	statusStore := *store
	statusStore.UpdateStrategy = statusStrategy
	statusStore.ResetFieldsStrategy = statusStrategy
	return &StatusREST{store: &statusStore}
}

// New returns an empty object of the kind.
func (r *StatusREST) New() runtime.Object { return r.store.New() }

// Destroy does nothing: the main store owns and closes the shared storage.
func (r *StatusREST) Destroy() {}

// NamespaceScoped follows the main resource.
func (r *StatusREST) NamespaceScoped() bool { return r.store.NamespaceScoped() }

// GetSingularName follows the main resource.
func (r *StatusREST) GetSingularName() string { return r.store.GetSingularName() }

// ReadinessCheck follows the main resource.
func (r *StatusREST) ReadinessCheck() error { return r.store.ReadinessCheck() }

// Get retrieves the object, so that `kubectl get --subresource=status` works.
func (r *StatusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}

// Update changes only the status of the object.
func (r *StatusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo,
	createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc,
	forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	// Status never creates: the object must exist first.
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}

// GetResetFields lists the fields a status write may not change.
func (r *StatusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}

// ConvertToTable prints the status subresource with the kind's own columns.
func (r *StatusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}

// ResetFieldsOfMainResource is what a write to a kind's main resource may not
// set: its status, which only the status subresource writes.
func ResetFieldsOfMainResource() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(v1alpha1.SchemeGroupVersion.String()): fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// ResetFieldsOfStatus is what a write to a status subresource may not set:
// the spec, labels and annotations.
func ResetFieldsOfStatus() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(v1alpha1.SchemeGroupVersion.String()): fieldpath.NewSet(
			fieldpath.MakePathOrDie("spec"), fieldpath.MakePathOrDie("metadata", "labels"),
			fieldpath.MakePathOrDie("metadata", "annotations")),
	}
}
