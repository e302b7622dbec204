// Package hardware is the registry of stargate.io Hardware.
package hardware

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

// hardwareStrategy governs creates, updates and deletes of Hardware.
type hardwareStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// Strategy is the default strategy for Hardware.
func Strategy(typer runtime.ObjectTyper) hardwareStrategy {
	return hardwareStrategy{typer, names.SimpleNameGenerator}
}

func (hardwareStrategy) NamespaceScoped() bool { return true }

// GetResetFields keeps server-side apply of the main resource away from status.
func (hardwareStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return registry.ResetFieldsOfMainResource()
}

// PrepareForCreate clears status (only Stargate writes it) and normalises the MAC.
func (hardwareStrategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	hw := obj.(*stargate.Hardware)
	hw.Status = stargate.HardwareStatus{}
	hw.Generation = 1
	normalize(hw)
}

// PrepareForUpdate keeps the stored status and bumps generation on spec changes.
func (hardwareStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	hw, oldHW := obj.(*stargate.Hardware), old.(*stargate.Hardware)
	hw.Status = oldHW.Status
	normalize(hw)
	if !apiequality.Semantic.DeepEqual(hw.Spec, oldHW.Spec) {
		hw.Generation = oldHW.Generation + 1
	}
}

func normalize(hw *stargate.Hardware) {
	if mac, ok := validation.NormalizeMAC(hw.Spec.MAC); ok {
		hw.Spec.MAC = mac
	}
}

func (hardwareStrategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateHardware(obj.(*stargate.Hardware))
}

func (hardwareStrategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string {
	return nil
}

func (hardwareStrategy) AllowCreateOnUpdate(ctx context.Context) bool { return false }

func (hardwareStrategy) AllowUnconditionalUpdate(ctx context.Context) bool { return true }

func (hardwareStrategy) Canonicalize(obj runtime.Object) {}

func (hardwareStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateHardwareUpdate(obj.(*stargate.Hardware), old.(*stargate.Hardware))
}

func (hardwareStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// hardwareStatusStrategy governs writes to the status subresource.
type hardwareStatusStrategy struct {
	hardwareStrategy
}

// StatusStrategy is the strategy of Hardware's status subresource.
func StatusStrategy(typer runtime.ObjectTyper) hardwareStatusStrategy {
	return hardwareStatusStrategy{Strategy(typer)}
}

// GetResetFields keeps status writes away from spec and metadata.
func (hardwareStatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return registry.ResetFieldsOfStatus()
}

// PrepareForUpdate keeps everything but status as stored.
func (hardwareStatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	hw, oldHW := obj.(*stargate.Hardware), old.(*stargate.Hardware)
	hw.Spec = oldHW.Spec
	metav1.ResetObjectMetaForStatus(&hw.ObjectMeta, &oldHW.ObjectMeta)
}

func (hardwareStatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateHardwareStatusUpdate(obj.(*stargate.Hardware), old.(*stargate.Hardware))
}

func (hardwareStatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and selectable fields of a Hardware.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	hw, ok := obj.(*stargate.Hardware)
	if !ok {
		return nil, nil, fmt.Errorf("not a Hardware: %T", obj)
	}
	return hw.Labels, SelectableFields(hw), nil
}

// SelectableFields are the fields `--field-selector` can match on.
func SelectableFields(hw *stargate.Hardware) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{
		"spec.mac":           hw.Spec.MAC,
		"spec.ipv4":          hw.Spec.IPv4,
		"spec.inventory.sku": hw.Spec.Inventory.SKU,
		"status.state":       string(hw.Status.State),
	}, &hw.ObjectMeta, true)
}

// Match is the filter storage uses for lists and watches.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
