// Package joblock enforces, in the server, what a Job may not do to its
// Hardware: a Job must name a Hardware (and, for a repave, a Template) that
// exists, and a Hardware runs one unfinished Job at a time.
//
// The lock is Hardware.status.activeJob. It is taken by a compare-and-set of
// the Hardware (an etcd transaction on its resourceVersion, through the
// generic store) in the Job store's BeginCreate hook, so it holds for every
// way a Job is created: kubectl create, /repave, any client, any number of
// concurrent requests or replicas. It is released when the Job finishes or is
// deleted, and when the create it was taken for fails before writing. A
// crash between taking the lock and storing the Job, or before releasing it,
// leaves a lock whose Job is missing or finished: the next request repairs it.
//
// A lock naming a Job that is not stored is respected for a grace period
// (the Reserved condition says since when), because the create that took it
// may still be on its way: the generic store runs validating admission, which
// may call webhooks, between BeginCreate and the write. So that no lock looks
// abandoned while the create that took it can still commit, every Job write
// made under a lock is bounded (package commitbound): it may not start later
// than the lock's time plus the grace minus a margin (25 s of 30 s), and is
// cancelled in flight then. A create still in admission at that moment fails
// with 504 Timeout and stores nothing; the margin covers a write in flight
// and the clock skew between replicas. A create whose write may or may not
// have landed keeps the lock (unknown is not "no"): if its Job was not
// stored, the lock is repaired once the grace has passed.
package joblock

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/validation"
	"stargate.io/stargate/pkg/registry/stargate/commitbound"
)

const (
	// ReservedCondition is True on a Hardware while a Job holds it; its
	// lastTransitionTime is when the lock was taken.
	ReservedCondition = stargate.HardwareConditionReserved
	// DefaultGrace is how long a lock naming a Job that does not exist is
	// respected: the Job is stored milliseconds after the lock is taken, so a
	// lock older than this lost its Job to a crash.
	DefaultGrace = 30 * time.Second
)

type jobReader interface {
	rest.Getter
	rest.Lister
}

// HardwareStatus is what the lock needs of the Hardware status subresource.
type HardwareStatus interface {
	rest.Getter
	rest.Updater
}

// Lock is the one-unfinished-Job-per-Hardware lock and the Job's reference checks.
type Lock struct {
	hardware  HardwareStatus
	templates rest.Getter
	jobs      jobReader
	clock     clock.PassiveClock
	grace     time.Duration
	bounds    *commitbound.Storage
	// ending holds, by UID, the Job a write ends and deletes at once (it
	// drops the last finalizer): the store hands afterDelete the Job as it
	// was stored before that write.
	ending sync.Map
}

// New returns a lock over the Hardware status subresource. Call Install on
// the Job store before the server serves.
func New(hardware HardwareStatus, templates rest.Getter, clk clock.PassiveClock, grace time.Duration) *Lock {
	return &Lock{hardware: hardware, templates: templates, clock: clk, grace: grace}
}

// Install sets the Job store's hooks. Call it before the status subresource
// copies the store, so that status writes release the lock too. The store's
// writes must be bounded (commitbound.Decorate).
func (l *Lock) Install(jobs *genericregistry.Store) error {
	bounds, err := commitbound.Of(jobs)
	if err != nil {
		return err
	}
	l.jobs, l.bounds = jobs, bounds
	jobs.BeginCreate = l.beginCreate
	jobs.AfterUpdate = l.afterUpdate
	jobs.AfterDelete = l.afterDelete
	jobs.ShouldDeleteDuringUpdate = l.deletingWrite
	return nil
}

// deletingWrite notes the Job a write ends and deletes at once, for
// afterDelete. The generic store's own rules decide whether it is deleted.
func (l *Lock) deletingWrite(_ context.Context, _ string, obj, _ runtime.Object) bool {
	if job := obj.(*stargate.Job); validation.IsFinished(job.Status.Phase) {
		l.ending.Store(job.UID, job.DeepCopy())
	}
	return true
}

// beginCreate checks the Job's references and takes the Hardware's lock.
func (l *Lock) beginCreate(ctx context.Context, obj runtime.Object, options *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
	job := obj.(*stargate.Job)
	if len(validation.ValidateJob(withNamespace(ctx, job))) > 0 {
		// Malformed: validation, which runs next, says why with field paths.
		return noop, nil
	}
	if job.Spec.TemplateRef != nil {
		if _, err := l.templates.Get(ctx, job.Spec.TemplateRef.Name, &metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return noop, invalid(job, field.NotFound(field.NewPath("spec", "templateRef", "name"), job.Spec.TemplateRef.Name))
		} else if err != nil {
			return noop, err
		}
	}

	hwName := job.Spec.HardwareRef.Name
	if dryrun.IsDryRun(options.DryRun) {
		hwObj, err := l.hardware.Get(ctx, hwName, &metav1.GetOptions{})
		if err != nil {
			return noop, l.hardwareError(job, err)
		}
		_, err = l.admit(ctx, hwObj.(*stargate.Hardware), job.Name)
		return noop, err
	}

	var tookIt bool
	updated, _, err := l.hardware.Update(ctx, hwName, rest.DefaultUpdatedObjectInfo(nil,
		func(ctx context.Context, _, old runtime.Object) (runtime.Object, error) {
			hw := old.(*stargate.Hardware).DeepCopy()
			took, err := l.admit(ctx, hw, job.Name)
			if err != nil {
				return nil, err
			}
			tookIt = took
			if took {
				hw.Status.ActiveJob = job.Name
				// Stamped as stored (whole seconds), so that the bound below
				// is computed from the very time others judge the lock by.
				setReserved(hw, metav1.ConditionTrue, "JobActive",
					fmt.Sprintf("Job %s holds this Hardware until it finishes", job.Name), metav1.NewTime(l.clock.Now()).Rfc3339Copy().Time)
			}
			return hw, nil
		}), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if err != nil {
		return noop, l.hardwareError(job, err)
	}
	// The Job's write is bounded by the lock it holds: taken now, or by an
	// earlier create of the same name.
	var takenAt time.Time
	if c := meta.FindStatusCondition(updated.(*stargate.Hardware).Status.Conditions, ReservedCondition); c != nil {
		takenAt = c.LastTransitionTime.Time
	}
	write := l.bounds.Set(job, l.clock, commitbound.Deadline(takenAt, l.grace), fmt.Sprintf(
		"Job %s locked Hardware %s at %s, a lock another Job may repair %s later while this one is not stored",
		job.Name, hwName, takenAt.UTC().Format(time.RFC3339), l.grace))
	return func(ctx context.Context, success bool) {
		if success {
			return // the bound is consumed by the write
		}
		l.bounds.Forget(job)
		switch {
		case !tookIt:
		case write.OutcomeUnknown():
			klog.FromContext(ctx).Info("Keeping the lock of a Job whose create may have been stored; it is repaired after the grace if it was not",
				"hardware", klog.KRef(job.Namespace, hwName), "job", job.Name, "grace", l.grace)
		default:
			// The Job was not stored: give the Hardware back.
			l.release(job, false)
		}
	}, nil
}

// admit decides whether job may hold hw. It returns took=false when job
// already holds it (a retried create of the same name), and a 409 naming the
// holder when another unfinished Job does.
func (l *Lock) admit(ctx context.Context, hw *stargate.Hardware, jobName string) (took bool, err error) {
	if hw.DeletionTimestamp != nil {
		return false, apierrors.NewConflict(stargate.Resource("hardwares"), hw.Name,
			fmt.Errorf("the Hardware is being deleted; no new Job may start on it"))
	}
	holder := hw.Status.ActiveJob
	switch {
	case holder == "":
		return true, nil
	case holder == jobName:
		return false, nil
	}
	live, held, err := l.holder(ctx, hw, holder)
	if err != nil {
		return false, err
	}
	if live {
		return false, apierrors.NewConflict(stargate.Resource("hardwares"), hw.Name,
			fmt.Errorf("Job %s is still running on it; wait for it to finish, or cancel it (spec.cancel=true) or delete it first", holder))
	}
	klog.FromContext(ctx).Info("Repairing a stale Hardware lock", "hardware", klog.KObj(hw), "staleJob", holder, "newJob", jobName)
	if held != nil {
		// Its release was lost (a crash right after its last write): its
		// result still belongs on the Hardware.
		l.ended(held, hw)
	}
	return true, nil
}

// holds reports whether Job holder, named by hw's lock, still holds it: it
// exists and is unfinished, or it does not exist yet but the lock is younger
// than the grace period (its create is in flight).
func (l *Lock) holds(ctx context.Context, hw *stargate.Hardware, holder string) (bool, error) {
	live, _, err := l.holder(ctx, hw, holder)
	return live, err
}

// holder is holds, also returning the holder when it is stored.
func (l *Lock) holder(ctx context.Context, hw *stargate.Hardware, holder string) (bool, *stargate.Job, error) {
	obj, err := l.jobs.Get(ctx, holder, &metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		c := meta.FindStatusCondition(hw.Status.Conditions, ReservedCondition)
		return c != nil && c.Status == metav1.ConditionTrue && l.clock.Since(c.LastTransitionTime.Time) < l.grace, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	job := obj.(*stargate.Job)
	return !validation.IsFinished(job.Status.Phase), job, nil
}

// HardwareDeletable refuses to delete a Hardware that an unfinished Job holds.
// Install it as the Hardware REST's DeleteGuard.
func (l *Lock) HardwareDeletable(ctx context.Context, obj runtime.Object) error {
	hw := obj.(*stargate.Hardware)
	if hw.Status.ActiveJob == "" {
		return nil
	}
	live, err := l.holds(ctx, hw, hw.Status.ActiveJob)
	if err != nil || !live {
		return err
	}
	return apierrors.NewConflict(stargate.Resource("hardwares"), hw.Name, fmt.Errorf(
		"Job %s is still running on it; cancel it (spec.cancel=true) or `kubectl delete jobs.stargate.io %s` first",
		hw.Status.ActiveJob, hw.Status.ActiveJob))
}

// TemplateDeletable refuses to delete a Template that an unfinished Job uses.
// Install it as the Template REST's DeleteGuard.
//
// Unlike the Hardware lock this is a check, not a lock: a Job created in the
// instant between the check and the delete loses its Template, and its repave
// fails with the reason the controller gives (the Template is resolved into
// status.template when the Job starts).
func (l *Lock) TemplateDeletable(ctx context.Context, obj runtime.Object) error {
	tmpl := obj.(*stargate.Template)
	list, err := l.jobs.List(ctx, &metainternalversion.ListOptions{})
	if err != nil {
		return err
	}
	for _, job := range list.(*stargate.JobList).Items {
		if job.Spec.TemplateRef != nil && job.Spec.TemplateRef.Name == tmpl.Name && !validation.IsFinished(job.Status.Phase) {
			return apierrors.NewConflict(stargate.Resource("templates"), tmpl.Name, fmt.Errorf(
				"unfinished Job %s uses it; cancel (spec.cancel=true) or delete that Job first", job.Name))
		}
	}
	return nil
}

// DatacenterDeletable refuses to delete a Datacenter while its namespace
// (a Datacenter governs the namespace of its name) holds an unfinished Job:
// the controller could no longer reach the datacenter to run, cancel or
// finish it. Install it as the Datacenter REST's DeleteGuard.
//
// Like TemplateDeletable this is a check, not a lock: a Job created in the
// instant between the check and the delete is left without its Datacenter,
// as is a Job created in a namespace that never had one.
func (l *Lock) DatacenterDeletable(ctx context.Context, obj runtime.Object) error {
	return l.noUnfinishedJobs(ctx, obj.(*stargate.Datacenter).Name, "deleting the Datacenter")
}

// DatacenterUpdatable refuses to point a Datacenter at another endpoint
// while Jobs that may have reached the old one are unfinished: the new
// endpoint knows nothing of them, and its "not found" would be taken for
// theirs. Install it as the Datacenter store's BeginUpdate.
func (l *Lock) DatacenterUpdatable(ctx context.Context, obj, old runtime.Object, _ *metav1.UpdateOptions) (genericregistry.FinishFunc, error) {
	dc, oldDC := obj.(*stargate.Datacenter), old.(*stargate.Datacenter)
	if dc.Spec.Endpoint == oldDC.Spec.Endpoint {
		return noop, nil
	}
	return noop, l.noUnfinishedJobs(ctx, dc.Name, "changing spec.endpoint")
}

// noUnfinishedJobs answers 409 naming an unfinished Job of datacenter's namespace.
func (l *Lock) noUnfinishedJobs(ctx context.Context, datacenter, doing string) error {
	list, err := l.jobs.List(genericapirequest.WithNamespace(ctx, datacenter), &metainternalversion.ListOptions{})
	if err != nil {
		return err
	}
	for _, job := range list.(*stargate.JobList).Items {
		if !validation.IsFinished(job.Status.Phase) {
			return apierrors.NewConflict(stargate.Resource("datacenters"), datacenter, fmt.Errorf(
				"unfinished Job %s/%s runs in it; wait for it to finish, or cancel it (spec.cancel=true), before %s",
				datacenter, job.Name, doing))
		}
	}
	return nil
}

// afterUpdate makes the Hardware follow its Job: busy while the Job runs,
// released with the Job's result once it has finished.
func (l *Lock) afterUpdate(obj runtime.Object, options *metav1.UpdateOptions) {
	job := obj.(*stargate.Job)
	switch {
	case dryrun.IsDryRun(options.DryRun):
	case validation.IsFinished(job.Status.Phase):
		l.release(job, true)
	case job.Status.Phase == stargate.JobRunning:
		l.follow(job)
	}
}

// afterDelete releases the lock of a deleted Job.
func (l *Lock) afterDelete(obj runtime.Object, options *metav1.DeleteOptions) {
	job := obj.(*stargate.Job)
	if ended, ok := l.ending.LoadAndDelete(job.UID); ok {
		job = ended.(*stargate.Job) // ended by the write that deleted it
	}
	if !dryrun.IsDryRun(options.DryRun) {
		l.release(job, validation.IsFinished(job.Status.Phase))
	}
}

// release clears hw's lock if jobName holds it. A failure is logged, not
// returned: the hooks cannot fail their request, and the next Job for the
// Hardware repairs a lock left behind.
func (l *Lock) release(job *stargate.Job, finished bool) {
	namespace, hwName, jobName := job.Namespace, job.Spec.HardwareRef.Name, job.Name
	ctx := genericapirequest.WithNamespace(context.Background(), namespace)
	_, _, err := l.hardware.Update(ctx, hwName, rest.DefaultUpdatedObjectInfo(nil,
		func(ctx context.Context, _, old runtime.Object) (runtime.Object, error) {
			hw := old.(*stargate.Hardware)
			if hw.Status.ActiveJob != jobName {
				return hw, nil // someone else's lock, or none: nothing to do
			}
			hw = hw.DeepCopy()
			if finished {
				l.ended(job, hw)
			}
			hw.Status.ActiveJob = ""
			setReserved(hw, metav1.ConditionFalse, "Released", fmt.Sprintf("Job %s released this Hardware", jobName), l.clock.Now())
			return hw, nil
		}), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		klog.ErrorS(err, "Could not release a Hardware lock; the next Job on it will repair it",
			"hardware", klog.KRef(namespace, hwName), "job", jobName)
	}
}

// ended puts finished job's result on hw, which it held: the state it left
// the machine in (FollowJob), and the result, which outlives the Job (its
// TTL deletes it).
func (l *Lock) ended(job *stargate.Job, hw *stargate.Hardware) {
	FollowJob(job, &hw.Status, l.clock.Now())
	hw.Status.ObservedGeneration = hw.Generation
	hw.Status.LastJob = job.Name
	hw.Status.LastJobResult = &stargate.JobResult{Name: job.Name, Operation: job.Spec.Operation,
		Phase: job.Status.Phase, Reason: job.Status.Reason, CompletionTime: job.Status.CompletionTime}
}

// setReserved sets the Reserved condition, stamping now as its transition
// time whenever the lock changes hands (meta.SetStatusCondition would keep the
// old time when a stale lock is taken over, True to True).
func setReserved(hw *stargate.Hardware, status metav1.ConditionStatus, reason, message string, now time.Time) {
	meta.RemoveStatusCondition(&hw.Status.Conditions, ReservedCondition)
	meta.SetStatusCondition(&hw.Status.Conditions, metav1.Condition{Type: ReservedCondition, Status: status,
		Reason: reason, Message: message, LastTransitionTime: metav1.NewTime(now), ObservedGeneration: hw.Generation})
}

// hardwareError turns a missing Hardware into a 422 on spec.hardwareRef.name;
// other errors pass as they are.
func (l *Lock) hardwareError(job *stargate.Job, err error) error {
	if apierrors.IsNotFound(err) {
		return invalid(job, field.NotFound(field.NewPath("spec", "hardwareRef", "name"), job.Spec.HardwareRef.Name))
	}
	return err
}

func invalid(job *stargate.Job, errs ...*field.Error) error {
	return apierrors.NewInvalid(stargate.Kind("Job"), job.Name, errs)
}

// withNamespace returns job with the request's namespace filled in, as
// BeforeCreate will do, so that validation here sees what it will see there.
func withNamespace(ctx context.Context, job *stargate.Job) *stargate.Job {
	if job.Namespace != "" {
		return job
	}
	j := job.DeepCopy()
	j.Namespace = genericapirequest.NamespaceValue(ctx)
	return j
}

func noop(context.Context, bool) {}
