// Package campaign is the registry of stargate.io Campaigns.
package campaign

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
	"stargate.io/stargate/pkg/apis/stargate/validation"
	registry "stargate.io/stargate/pkg/registry/stargate"
)

// campaignStrategy governs creates, updates and deletes of Campaigns.
type campaignStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// Strategy is the default strategy for Campaigns.
func Strategy(typer runtime.ObjectTyper) campaignStrategy {
	return campaignStrategy{typer, names.SimpleNameGenerator}
}

// NamespaceScoped is false: a Campaign spans the namespaces of many datacenters.
func (campaignStrategy) NamespaceScoped() bool { return false }

// GetResetFields keeps server-side apply of the main resource away from status.
func (campaignStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return registry.ResetFieldsOfMainResource()
}

// PrepareForCreate starts every Campaign with an empty status: its progress
// is the controller's to write.
func (campaignStrategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	c := obj.(*stargate.Campaign)
	c.Status = stargate.CampaignStatus{}
	c.Generation = 1
}

// PrepareForUpdate keeps the stored status and bumps the generation when the
// spec changed (a pause, an approval, a new limit), so the controller's
// status.observedGeneration tells when it acted on it.
func (campaignStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	c, oldC := obj.(*stargate.Campaign), old.(*stargate.Campaign)
	c.Status = oldC.Status
	if !apiequality.Semantic.DeepEqual(c.Spec, oldC.Spec) {
		c.Generation = oldC.Generation + 1
	}
}

func (campaignStrategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateCampaign(obj.(*stargate.Campaign))
}

func (campaignStrategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string {
	return nil
}

func (campaignStrategy) AllowCreateOnUpdate(ctx context.Context) bool { return false }

func (campaignStrategy) AllowUnconditionalUpdate(ctx context.Context) bool { return true }

func (campaignStrategy) Canonicalize(obj runtime.Object) {}

func (campaignStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateCampaignUpdate(obj.(*stargate.Campaign), old.(*stargate.Campaign))
}

func (campaignStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// campaignStatusStrategy governs writes to the status subresource.
type campaignStatusStrategy struct {
	campaignStrategy
}

// StatusStrategy is the strategy of a Campaign's status subresource.
func StatusStrategy(typer runtime.ObjectTyper) campaignStatusStrategy {
	return campaignStatusStrategy{Strategy(typer)}
}

// GetResetFields keeps status writes away from spec and metadata.
func (campaignStatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return registry.ResetFieldsOfStatus()
}

// PrepareForUpdate keeps everything but status as stored.
func (campaignStatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	c, oldC := obj.(*stargate.Campaign), old.(*stargate.Campaign)
	c.Spec = oldC.Spec
	metav1.ResetObjectMetaForStatus(&c.ObjectMeta, &oldC.ObjectMeta)
}

func (campaignStatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateCampaignStatusUpdate(obj.(*stargate.Campaign), old.(*stargate.Campaign))
}

func (campaignStatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and selectable fields of a Campaign.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	c, ok := obj.(*stargate.Campaign)
	if !ok {
		return nil, nil, fmt.Errorf("not a Campaign: %T", obj)
	}
	return c.Labels, SelectableFields(c), nil
}

// SelectableFields are the fields `--field-selector` can match on.
// status.phase is Pending for a Campaign the controller has not written yet,
// as `kubectl get campaigns` prints it.
func SelectableFields(c *stargate.Campaign) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{
		"spec.operation": string(c.Spec.Operation),
		"status.phase":   string(phase(c)),
	}, &c.ObjectMeta, false)
}

// phase is the Campaign's phase, Pending before the controller set one.
func phase(c *stargate.Campaign) stargate.CampaignPhase {
	if c.Status.Phase == "" {
		return stargate.CampaignPending
	}
	return c.Status.Phase
}

// Match is the filter storage uses for lists and watches.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
