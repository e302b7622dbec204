// Package template is the registry of stargate.io Templates.
package template

import (
	"context"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/validation"
)

// templateStrategy governs creates, updates and deletes of Templates. A
// Template has no status.
type templateStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// Strategy is the default strategy for Templates.
func Strategy(typer runtime.ObjectTyper) templateStrategy {
	return templateStrategy{typer, names.SimpleNameGenerator}
}

func (templateStrategy) NamespaceScoped() bool { return true }

func (templateStrategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	obj.(*stargate.Template).Generation = 1
}

func (templateStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	t, oldT := obj.(*stargate.Template), old.(*stargate.Template)
	if !apiequality.Semantic.DeepEqual(t.Spec, oldT.Spec) {
		t.Generation = oldT.Generation + 1
	}
}

func (templateStrategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateTemplate(obj.(*stargate.Template))
}

// WarningsOnCreate warns about plain-http images, which are allowed but unsafe.
func (templateStrategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string {
	return warnings(obj.(*stargate.Template))
}

func (templateStrategy) AllowCreateOnUpdate(ctx context.Context) bool { return false }

func (templateStrategy) AllowUnconditionalUpdate(ctx context.Context) bool { return true }

func (templateStrategy) Canonicalize(obj runtime.Object) {}

func (templateStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateTemplateUpdate(obj.(*stargate.Template), old.(*stargate.Template))
}

func (templateStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return warnings(obj.(*stargate.Template))
}

func warnings(t *stargate.Template) []string {
	if w := validation.InsecureImageWarning(field.NewPath("spec", "osImage"), t.Spec.OSImage); w != "" {
		return []string{w}
	}
	return nil
}

// GetAttrs returns the labels and selectable fields of a Template.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	t, ok := obj.(*stargate.Template)
	if !ok {
		return nil, nil, fmt.Errorf("not a Template: %T", obj)
	}
	return t.Labels, SelectableFields(t), nil
}

// SelectableFields are the fields `--field-selector` can match on.
func SelectableFields(t *stargate.Template) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{"spec.osVersion": t.Spec.OSVersion}, &t.ObjectMeta, true)
}

// Match is the filter storage uses for lists and watches.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
