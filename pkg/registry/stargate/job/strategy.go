// Package job is the registry of stargate.io Jobs.
package job

import (
	"context"
	"fmt"
	"slices"
	"strconv"

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

// jobStrategy governs creates, updates and deletes of Jobs.
type jobStrategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

// Strategy is the default strategy for Jobs.
func Strategy(typer runtime.ObjectTyper) jobStrategy {
	return jobStrategy{typer, names.SimpleNameGenerator}
}

func (jobStrategy) NamespaceScoped() bool { return true }

// GetResetFields keeps server-side apply of the main resource away from status.
func (jobStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return registry.ResetFieldsOfMainResource()
}

// PrepareForCreate starts every Job Pending: a watcher sees the phase from
// the first event, as in the seed's walk-through.
func (jobStrategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	job := obj.(*stargate.Job)
	job.Status = stargate.JobStatus{Phase: stargate.JobPending}
	// The cancel finalizer is Stargate's, put on when it fixes the request.
	job.Finalizers = slices.DeleteFunc(job.Finalizers, func(f string) bool { return f == stargate.JobCancelFinalizer })
	job.Generation = 1
}

// PrepareForUpdate keeps the stored status. The only spec change validation
// lets through is cancel, which bumps the generation.
func (jobStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	job, oldJob := obj.(*stargate.Job), old.(*stargate.Job)
	job.Status = oldJob.Status
	// The cancel finalizer is Stargate's: an update (apply, replace, a patch
	// of the finalizers) neither adds nor removes it, so a Job that may run at
	// its datacenter keeps its Hardware until Stargate has settled it. The
	// one way to drop it by hand is to abandon the Job (stargate.io/abandon).
	had, has := slices.Contains(oldJob.Finalizers, stargate.JobCancelFinalizer), slices.Contains(job.Finalizers, stargate.JobCancelFinalizer)
	switch {
	case has && !had:
		job.Finalizers = slices.DeleteFunc(slices.Clone(job.Finalizers), func(f string) bool { return f == stargate.JobCancelFinalizer })
	case had && !has && job.Labels[stargate.JobAbandonLabel] != "true":
		job.Finalizers = append(slices.Clone(job.Finalizers), stargate.JobCancelFinalizer)
	}
	if job.Spec.Cancel != oldJob.Spec.Cancel {
		job.Generation = oldJob.Generation + 1
	}
}

func (jobStrategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	return validation.ValidateJob(obj.(*stargate.Job))
}

func (jobStrategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }

func (jobStrategy) AllowCreateOnUpdate(ctx context.Context) bool { return false }

func (jobStrategy) AllowUnconditionalUpdate(ctx context.Context) bool { return true }

func (jobStrategy) Canonicalize(obj runtime.Object) {}

func (jobStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateJobUpdate(obj.(*stargate.Job), old.(*stargate.Job))
}

func (jobStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// jobStatusStrategy governs writes to the status subresource.
type jobStatusStrategy struct {
	jobStrategy
}

// StatusStrategy is the strategy of a Job's status subresource.
func StatusStrategy(typer runtime.ObjectTyper) jobStatusStrategy {
	return jobStatusStrategy{Strategy(typer)}
}

// GetResetFields keeps status writes away from spec and metadata.
func (jobStatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return registry.ResetFieldsOfStatus()
}

// PrepareForUpdate keeps everything but status as stored, with the
// cancel-at-datacenter finalizer following the status: the write that fixes
// status.submission (from then on a submit may reach the datacenter) puts it
// on, in the same etcd write, so a Job deleted from then on is settled with
// its datacenter before it goes; the write ending a Job takes it off, so a
// finished Job, or one deleted while running, goes in the write that records
// its end.
func (jobStatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	job, oldJob := obj.(*stargate.Job), old.(*stargate.Job)
	job.Spec = oldJob.Spec
	metav1.ResetObjectMetaForStatus(&job.ObjectMeta, &oldJob.ObjectMeta)
	switch {
	case job.Status.Phase == stargate.JobSucceeded || job.Status.Phase == stargate.JobFailed:
		job.Finalizers = slices.DeleteFunc(slices.Clone(job.Finalizers), func(f string) bool { return f == stargate.JobCancelFinalizer })
	case job.Status.Submission != nil && job.DeletionTimestamp == nil && !slices.Contains(job.Finalizers, stargate.JobCancelFinalizer):
		job.Finalizers = append(slices.Clone(job.Finalizers), stargate.JobCancelFinalizer)
	case job.Status.Submission == nil && oldJob.Status.Submission != nil && job.Status.DCJobID == "":
		// The request was given back (nothing ran): nothing to cancel.
		job.Finalizers = slices.DeleteFunc(slices.Clone(job.Finalizers), func(f string) bool { return f == stargate.JobCancelFinalizer })
	}
}

func (jobStatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateJobStatusUpdate(obj.(*stargate.Job), old.(*stargate.Job))
}

func (jobStatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and selectable fields of a Job.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	job, ok := obj.(*stargate.Job)
	if !ok {
		return nil, nil, fmt.Errorf("not a Job: %T", obj)
	}
	return job.Labels, SelectableFields(job), nil
}

// SelectableFields are the fields `--field-selector` can match on.
func SelectableFields(job *stargate.Job) fields.Set {
	return generic.AddObjectMetaFieldsSet(fields.Set{
		"spec.hardwareRef.name": job.Spec.HardwareRef.Name,
		"spec.operation":        string(job.Spec.Operation),
		"status.phase":          string(job.Status.Phase),
		"status.occupying":      strconv.FormatBool(job.Occupies()),
	}, &job.ObjectMeta, true)
}

// Match is the filter storage uses for lists and watches.
func Match(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
