// Package datacenter is the registry of stargate.io Datacenters.
package datacenter

import (
	"context"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/apis/stargate/validation"
	registry "stargate.io/stargate/pkg/registry/stargate"
)

// datacenterStrategy governs creates, updates and deletes of Datacenters.
type datacenterStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// Strategy is the default strategy for Datacenters.
func Strategy(typer runtime.ObjectTyper) datacenterStrategy {
	return datacenterStrategy{typer, names.SimpleNameGenerator}
}

// NamespaceScoped is false: a Datacenter governs the namespace of its name.
func (datacenterStrategy) NamespaceScoped() bool { return false }

// GetResetFields keeps server-side apply of the main resource away from status.
func (datacenterStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return registry.ResetFieldsOfMainResource()
}

func (datacenterStrategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	dc := obj.(*stargate.Datacenter)
	dc.Status = stargate.DatacenterStatus{}
	dc.Generation = 1
	setNameLabel(dc)
}

// setNameLabel keeps v1alpha1.DatacenterNameLabel equal to the name, as
// kube-apiserver keeps kubernetes.io/metadata.name on namespaces: a label
// selector (a Campaign's datacenterSelector) can then pick Datacenters by
// name. A namespace name is a DNS label, so it is a valid label value.
func setNameLabel(dc *stargate.Datacenter) {
	if dc.Labels == nil {
		dc.Labels = map[string]string{}
	}
	dc.Labels[v1alpha1.DatacenterNameLabel] = dc.Name
}

func (datacenterStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	dc, oldDC := obj.(*stargate.Datacenter), old.(*stargate.Datacenter)
	dc.Status = oldDC.Status
	setNameLabel(dc)
	if !apiequality.Semantic.DeepEqual(dc.Spec, oldDC.Spec) {
		dc.Generation = oldDC.Generation + 1
	}
}

func (datacenterStrategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateDatacenter(obj.(*stargate.Datacenter))
}

func (datacenterStrategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string {
	return warnings(obj.(*stargate.Datacenter))
}

func (datacenterStrategy) AllowCreateOnUpdate(ctx context.Context) bool { return false }

func (datacenterStrategy) AllowUnconditionalUpdate(ctx context.Context) bool { return true }

func (datacenterStrategy) Canonicalize(obj runtime.Object) {}

func (datacenterStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateDatacenterUpdate(obj.(*stargate.Datacenter), old.(*stargate.Datacenter))
}

func (datacenterStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return warnings(obj.(*stargate.Datacenter))
}

func warnings(dc *stargate.Datacenter) []string {
	if w := validation.InsecureEndpointWarning(field.NewPath("spec", "endpoint"), dc.Spec.Endpoint); w != "" {
		return []string{w}
	}
	return nil
}

// datacenterStatusStrategy governs writes to the status subresource.
type datacenterStatusStrategy struct {
	datacenterStrategy
}

// StatusStrategy is the strategy of a Datacenter's status subresource.
func StatusStrategy(typer runtime.ObjectTyper) datacenterStatusStrategy {
	return datacenterStatusStrategy{Strategy(typer)}
}

// GetResetFields keeps status writes away from spec and metadata.
func (datacenterStatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return registry.ResetFieldsOfStatus()
}

// PrepareForUpdate keeps everything but status as stored.
func (datacenterStatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	dc, oldDC := obj.(*stargate.Datacenter), old.(*stargate.Datacenter)
	dc.Spec = oldDC.Spec
	metav1.ResetObjectMetaForStatus(&dc.ObjectMeta, &oldDC.ObjectMeta)
}

func (datacenterStatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateDatacenterStatusUpdate(obj.(*stargate.Datacenter), old.(*stargate.Datacenter))
}

func (datacenterStatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and selectable fields of a Datacenter.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	dc, ok := obj.(*stargate.Datacenter)
	if !ok {
		return nil, nil, fmt.Errorf("not a Datacenter: %T", obj)
	}
	return dc.Labels, generic.ObjectMetaFieldsSet(&dc.ObjectMeta, false), nil
}

// Match is the filter storage uses for lists and watches.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
