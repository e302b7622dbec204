// Package jobs is the controller that carries each Job out through the API of
// its Hardware's datacenter: Pending -> Running (submitted, dcJobID saved) ->
// Succeeded or Failed, with the Hardware's status kept in step.
//
// Every submission carries the Job's UID as its idempotency key, so a
// controller that crashed (or lost an answer) after submitting but before
// saving status.dcJobID submits again and gets the same datacenter job back:
// an operation never runs twice. Status writes carry resourceVersion
// preconditions (UpdateStatus), so a stale controller cannot overwrite a
// newer state.
package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller"
	"stargate.io/stargate/pkg/controller/datacenters"
	"stargate.io/stargate/pkg/controller/dcclients"
	"stargate.io/stargate/pkg/controller/metrics"
	"stargate.io/stargate/pkg/datacenter"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions/stargate/v1alpha1"
	listers "stargate.io/stargate/pkg/generated/listers/stargate/v1alpha1"
)

// Reasons on Job conditions and status.reason.
const (
	ReasonDatacenterNotFound   = "DatacenterNotFound"
	ReasonDatacenterPaused     = "DatacenterPaused"
	ReasonDatacenterBusy       = "DatacenterBusy"
	ReasonDatacenterDown       = "DatacenterUnavailable"
	ReasonSubmitted            = "Submitted"
	ReasonCompleted            = "Completed"
	ReasonDatacenterJobFailed  = "DatacenterJobFailed"
	ReasonBackoffLimitExceeded = "BackoffLimitExceeded"
	ReasonRejected             = "RejectedByDatacenter"
	ReasonCancelled            = "CancelledAtDatacenter"
	ReasonRetrying             = "RetryingSubmit"
	ReasonCancelledByUser      = "Cancelled"
	ReasonDeadlineExceeded     = "DeadlineExceeded"
	ReasonDeleted              = "Deleted"
	// ReasonSubmitting: the request is fixed in status.submission and is being sent.
	ReasonSubmitting = "Submitting"
	// ReasonAdopted: an earlier submit, whose answer was lost, started the
	// datacenter job the Job now follows.
	ReasonAdopted = "AdoptedDatacenterJob"
	// ReasonCancelling: the datacenter was asked to stop the job and has not yet.
	ReasonCancelling = "Cancelling"
	// ReasonRunning: running at the datacenter again after a wait.
	ReasonRunning = "Running"
	// ReasonOutcomeUnknown: a submit may have reached the datacenter, which
	// cannot be asked what runs under the Job's key; the Job waits.
	ReasonOutcomeUnknown = "SubmitOutcomeUnknown"
	// ReasonCredentialsMissing: the datacenter's credentials file is missing.
	ReasonCredentialsMissing = "DatacenterCredentialsMissing"
	// ReasonCredentialsRejected: the datacenter refused the credentials (401/403).
	ReasonCredentialsRejected = "DatacenterCredentialsRejected"
	ReasonTemplateNotFound    = "TemplateNotFound"
	// ReasonTemplateChanged: the Template's user data changed between submit
	// attempts, so the first request cannot be sent again as it was.
	ReasonTemplateChanged = "TemplateChanged"
	// ReasonHardwareNotHeld: the Hardware's lock names another Job.
	ReasonHardwareNotHeld = "HardwareNotHeld"
	// ReasonAbandoned: an operator labelled the Job stargate.io/abandon=true.
	ReasonAbandoned = "Abandoned"

	// ConditionFailureTarget: the Job gave up (backoff limit, a refusal) and
	// fails once the datacenter says nothing runs under its key.
	ConditionFailureTarget = "FailureTarget"
	ConditionProgressing   = "Progressing"
	ConditionComplete      = "Complete"
	ConditionFailed        = "Failed"
)

// Failpoints: the moments a crash is most dangerous, where tests inject one.
const (
	// FailpointBeforeSubmit: the finalizer is on, nothing sent yet.
	FailpointBeforeSubmit = "before-submit"
	// FailpointAfterSubmit: the datacenter accepted the job; dcJobID is not saved.
	FailpointAfterSubmit = "after-submit"
	// FailpointWhilePolling: the Job is Running and being followed.
	FailpointWhilePolling = "while-polling"
)

// Options tune the controller.
type Options struct {
	// PollInterval is how often a long-running datacenter job is checked.
	// A job is first checked after MinPollInterval, then at half its running
	// time so far, up to PollInterval: quick operations finish quickly, long
	// ones cost a request every PollInterval.
	PollInterval, MinPollInterval time.Duration
	// WaitInterval is how often a Job held back by its Datacenter is looked at again.
	WaitInterval time.Duration
	// SubmitWindow bounds a submit: the request carries the deadline
	// lastAttemptTime + SubmitWindow, after which a datacenter must not start
	// it, so a lookup that finds nothing under a Job's key is final only past
	// it. It must exceed one call's retries (default 60s).
	SubmitWindow time.Duration
	// Workers is the number of workers per datacenter (default 16: most of
	// a sync is waiting on the API server and the datacenter).
	Workers int
	Clock   clock.Clock
	// Recorder records Events on phase changes (default: none).
	Recorder events.EventRecorder
	// Leading, when set, is asked right before each submit or cancel at a
	// datacenter; an error (this replica lost the leader election) stops
	// the sync there.
	Leading func(context.Context) error
	// Failpoint, when set, is called at each Failpoint*; an error stops the
	// sync there, as a crash would. For tests only.
	Failpoint func(point string) error
}

// Controller drives Jobs.
type Controller struct {
	client    clientset.Interface
	jobs      listers.JobLister
	templates listers.TemplateLister
	dcs       listers.DatacenterLister
	synced    []cache.InformerSynced
	queue     *controller.Shards
	running   *controller.RunningJobs
	clientFor dcclients.ClientFor
	opts      Options
}

// noEvents is the recorder when no core API takes Events (standalone mode).
type noEvents struct{}

func (noEvents) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...interface{}) {
}

// New returns a controller over the given informers.
// It holds no Hardware: a Job reads its Hardware from etcd when it fixes its
// request, once.
func New(client clientset.Interface, jobInformer informers.JobInformer, tmplInformer informers.TemplateInformer,
	dcInformer informers.DatacenterInformer, clientFor dcclients.ClientFor, opts Options) (*Controller, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.MinPollInterval <= 0 || opts.MinPollInterval > opts.PollInterval {
		opts.MinPollInterval = min(100*time.Millisecond, opts.PollInterval)
	}
	if opts.WaitInterval <= 0 {
		opts.WaitInterval = 10 * time.Second
	}
	if opts.SubmitWindow <= 0 {
		opts.SubmitWindow = time.Minute
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Recorder == nil {
		opts.Recorder = noEvents{}
	}
	if opts.Failpoint == nil {
		opts.Failpoint = func(string) error { return nil }
	}
	if opts.Leading == nil {
		opts.Leading = func(context.Context) error { return nil }
	}
	if err := controller.AddJobIndexers(jobInformer.Informer()); err != nil {
		return nil, err
	}
	c := &Controller{
		client: client, jobs: jobInformer.Lister(), templates: tmplInformer.Lister(),
		dcs: dcInformer.Lister(), clientFor: clientFor, opts: opts,
		synced: []cache.InformerSynced{jobInformer.Informer().HasSynced, tmplInformer.Informer().HasSynced,
			dcInformer.Informer().HasSynced},
	}
	c.running = controller.NewRunningJobs(jobInformer.Informer())
	c.queue = controller.NewShards("stargate-jobs", opts.Workers, c.sync)
	if _, err := jobInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.queue.Enqueue,
		UpdateFunc: func(old, obj interface{}) {
			c.queue.Enqueue(obj)
			if oldJob, newJob := old.(*v1alpha1.Job), obj.(*v1alpha1.Job); controller.Occupies(oldJob) && !controller.Occupies(newJob) {
				c.wake(newJob.Namespace, ReasonDatacenterBusy) // a slot is free
			}
		},
		DeleteFunc: func(obj interface{}) {
			if job, ok := obj.(*v1alpha1.Job); ok && controller.Occupies(job) {
				c.wake(job.Namespace, ReasonDatacenterBusy)
			}
		},
	}); err != nil {
		return nil, err
	}
	// A Datacenter that appears, unpauses, gets more slots or comes back up
	// lets its waiting Jobs go on; a write that changed none of that (a probe
	// stamping its time) wakes nobody.
	if _, err := dcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.wakeDatacenter,
		UpdateFunc: func(old, obj interface{}) {
			if datacenterChanged(old.(*v1alpha1.Datacenter), obj.(*v1alpha1.Datacenter)) {
				c.wakeDatacenter(obj)
			}
		},
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// datacenterChanged reports a change that Jobs wait on: the spec (endpoint,
// paused, maxConcurrentJobs) or whether the datacenter is Ready.
func datacenterChanged(old, dc *v1alpha1.Datacenter) bool {
	ready := func(d *v1alpha1.Datacenter) metav1.ConditionStatus {
		if c := meta.FindStatusCondition(d.Status.Conditions, datacenters.ReadyCondition); c != nil {
			return c.Status
		}
		return metav1.ConditionUnknown
	}
	return !apiequality.Semantic.DeepEqual(old.Spec, dc.Spec) || ready(old) != ready(dc)
}

func (c *Controller) wakeDatacenter(obj interface{}) {
	if dc, ok := obj.(*v1alpha1.Datacenter); ok {
		c.wake(dc.Name, "")
	}
}

// wake enqueues the Pending Jobs of a datacenter: all of them, or those
// waiting for reason.
func (c *Controller) wake(namespace, reason string) {
	for _, job := range c.running.Waiting(namespace) {
		if reason == "" || job.Status.Reason == reason {
			c.queue.Enqueue(job)
		}
	}
}

// Run processes Jobs until ctx is done.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, c.synced...)
}

// Running counts the Jobs running per datacenter, as this controller sees them.
func (c *Controller) Running() *controller.RunningJobs { return c.running }

// sync moves one Job a step forward. It returns when to look again (0: only
// on the next change) or an error to be retried with rate limiting.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if isFinished(cached.Status.Phase) {
		return c.collect(ctx, cached)
	}
	job := cached.DeepCopy() // never change the cache
	logger := klog.FromContext(ctx).WithValues("job", klog.KObj(job), "datacenter", ns)
	ctx = klog.NewContext(ctx, logger)

	if job.Labels[v1alpha1.JobAbandonLabel] == "true" {
		return 0, c.abandon(ctx, job)
	}
	dc, err := c.dcs.Get(ns)
	if apierrors.IsNotFound(err) {
		return c.withoutDatacenter(ctx, job)
	}
	if err != nil {
		return 0, err
	}
	client, err := c.clientFor(dc)
	if err != nil {
		return 0, fmt.Errorf("datacenter %s: %w", dc.Name, err)
	}
	after, err := c.step(ctx, job, dc, client)
	if reason, ok := waitingReason(err); ok {
		// The datacenter cannot be asked now (credentials, an outage):
		// nothing about the Job changes but the reason it waits.
		var unknown *outcomeUnknownError
		late := errors.As(err, &unknown) && unknown.after > 0
		after, err = c.wait(ctx, job, reason, fmt.Sprintf("Datacenter %s: %v", dc.Name, err))
		if err == nil && late {
			after = unknown.after // exactly when the answer becomes final
		}
	}
	return after, err
}

// step is sync for a Job whose Datacenter exists.
func (c *Controller) step(ctx context.Context, job *v1alpha1.Job, dc *v1alpha1.Datacenter, client datacenter.Client) (time.Duration, error) {
	switch {
	case job.DeletionTimestamp != nil:
		if !slices.Contains(job.Finalizers, v1alpha1.JobCancelFinalizer) {
			return 0, nil // never sent anywhere: the deletion goes on by itself
		}
		return c.stop(ctx, job, client, ReasonDeleted, "the Job was deleted before it finished")
	case job.Spec.Cancel:
		return c.stop(ctx, job, client, ReasonCancelledByUser, "cancelled by spec.cancel")
	}
	if remaining, ok := c.deadline(job); ok && remaining <= 0 {
		return c.stop(ctx, job, client, ReasonDeadlineExceeded,
			fmt.Sprintf("the Job ran longer than its activeDeadlineSeconds (%d)", *job.Spec.ActiveDeadlineSeconds))
	}
	if job.Status.DCJobID == "" {
		return c.start(ctx, job, dc, client)
	}
	if err := c.opts.Failpoint(FailpointWhilePolling); err != nil {
		return 0, err
	}
	after, err := c.poll(ctx, job, client)
	if remaining, ok := c.deadline(job); ok && after > remaining {
		after = remaining // come back exactly when the deadline passes
	}
	return after, err
}

// withoutDatacenter handles a Job whose Datacenter does not exist. One that
// was never sent can still be cancelled or deleted; one that may have
// reached the datacenter cannot be settled without it, so it waits, holding
// its Hardware (deleting a Datacenter with unfinished Jobs is refused, so
// this takes a Datacenter deleted around the Job's own creation).
func (c *Controller) withoutDatacenter(ctx context.Context, job *v1alpha1.Job) (time.Duration, error) {
	ns := job.Namespace
	if !mayHaveReached(job) {
		switch {
		case job.DeletionTimestamp != nil:
			return 0, nil
		case job.Spec.Cancel:
			return 0, c.fail(ctx, job, ReasonCancelledByUser, "cancelled by spec.cancel before it was sent anywhere")
		}
		return c.wait(ctx, job, ReasonDatacenterNotFound, fmt.Sprintf("no Datacenter named %s governs namespace %s", ns, ns))
	}
	return c.wait(ctx, job, ReasonDatacenterNotFound, fmt.Sprintf(
		"no Datacenter named %s governs namespace %s, and the Job may have reached that datacenter; it waits, holding Hardware %s, until the Datacenter is back and says what runs under the Job's key",
		ns, ns, job.Spec.HardwareRef.Name))
}

// abandon ends a Job an operator gave up on (label stargate.io/abandon=true)
// without asking its datacenter, and says on its Hardware that the machine's
// state is unknown: whatever the Job started there may still run.
func (c *Controller) abandon(ctx context.Context, job *v1alpha1.Job) error {
	message := "abandoned by an operator (label " + v1alpha1.JobAbandonLabel + "=true)"
	if mayHaveReached(job) {
		message += "; the datacenter was not asked what runs under the Job's key: check the machine before using it"
		err := c.updateHardware(ctx, job, func(s *v1alpha1.HardwareStatus) {
			s.State = v1alpha1.HardwareStateUnknown
			meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: ConditionFailed, Status: metav1.ConditionTrue,
				Reason: ReasonAbandoned, Message: fmt.Sprintf("Job %s was %s", job.Name, message)})
		})
		if err != nil {
			return err
		}
	}
	return c.fail(ctx, job, ReasonAbandoned, message)
}

// deadline is the time a running Job has left before activeDeadlineSeconds.
func (c *Controller) deadline(job *v1alpha1.Job) (time.Duration, bool) {
	if job.Spec.ActiveDeadlineSeconds == nil || job.Status.StartTime == nil {
		return 0, false
	}
	end := job.Status.StartTime.Add(time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second)
	return end.Sub(c.opts.Clock.Now()), true
}

// stop ends a Job that was cancelled, deleted or ran past its deadline. A Job
// that may have reached its datacenter is cancelled there first, and ends
// only once the datacenter says its job stopped (as the datacenter says: a
// job that succeeded meanwhile makes the Job succeed).
func (c *Controller) stop(ctx context.Context, job *v1alpha1.Job, client datacenter.Client, reason, message string) (time.Duration, error) {
	if job.Status.DCJobID == "" {
		if !mayHaveReached(job) {
			return 0, c.fail(ctx, job, reason, message)
		}
		switch found, err := c.lookUp(ctx, job, client); {
		case err != nil:
			return 0, err
		case !found:
			return 0, c.fail(ctx, job, reason, message+"; nothing ran at the datacenter")
		}
	}
	if err := c.opts.Leading(ctx); err != nil {
		return 0, err
	}
	dcJob, err := client.Cancel(ctx, job.Status.DCJobID)
	switch {
	case datacenter.IsNotFound(err):
		return 0, c.fail(ctx, job, reason, fmt.Sprintf("%s; the datacenter no longer knows job %s", message, job.Status.DCJobID))
	case err != nil:
		return 0, err // retried: the datacenter must hear of it
	case dcJob.State == datacenter.JobSucceeded:
		return 0, c.succeed(ctx, job, client)
	case dcJob.State.Finished():
		return 0, c.fail(ctx, job, reason, message)
	}
	// Asked to stop, still running: the Job stays Running (and its Hardware
	// locked) until the datacenter says the job ended.
	if err := c.progress(ctx, job, ReasonCancelling,
		fmt.Sprintf("%s; waiting for the datacenter to stop job %s", message, dcJob.ID)); err != nil {
		return 0, err
	}
	return c.pollAfter(job), nil
}

// lookUp asks the datacenter what runs under the key of a Job that may have
// reached it but has no dcJobID. If a job does, the Job adopts it: it becomes
// Running on that job and ends as the datacenter says. found is false only
// when the datacenter said that nothing was ever submitted under the key. If
// it cannot be asked, the error says why (the Job waits for it, locked).
func (c *Controller) lookUp(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) (found bool, err error) {
	dcJob, err := client.FindJob(ctx, string(job.UID))
	switch {
	case datacenter.IsNotFound(err):
		// Final only once the latest submit can no longer start anything:
		// past its Not-After deadline, with the clocks' allowance.
		if last := job.Status.LastAttemptTime; last != nil {
			final := last.Add(c.opts.SubmitWindow + clockSkew)
			if wait := final.Sub(c.opts.Clock.Now()); wait > 0 {
				return false, &outcomeUnknownError{after: wait, err: fmt.Errorf(
					"nothing runs under the Job's key yet, but the submit sent at %s may still arrive until %s",
					last.UTC().Format(time.RFC3339), final.UTC().Format(time.RFC3339))}
			}
		}
		return false, nil
	case err != nil:
		return false, &outcomeUnknownError{err: err}
	}
	return true, c.markRunning(ctx, job, dcJob, ReasonAdopted,
		fmt.Sprintf("found job %s that an earlier submit started at %s under this Job's key", dcJob.ID, job.Namespace))
}

// settle ends a Job that gives up on its submit (backoff limit, a refusal, its
// Template changed) only after the datacenter says nothing runs under its
// key; a job found there is adopted and followed instead.
func (c *Controller) settle(ctx context.Context, job *v1alpha1.Job, client datacenter.Client, reason, message string) (time.Duration, error) {
	// The decision is kept (as batch Jobs keep theirs) until the datacenter
	// has answered: a Job that must wait for that answer is never sent again.
	c.setCondition(job, ConditionFailureTarget, metav1.ConditionTrue, reason, message)
	switch found, err := c.lookUp(ctx, job, client); {
	case err != nil:
		return 0, err
	case !found:
		return 0, c.fail(ctx, job, reason, message)
	}
	return c.poll(ctx, job, client)
}

// collect deletes a finished Job once its ttlSecondsAfterFinished has passed,
// and says when to come back before that.
func (c *Controller) collect(ctx context.Context, job *v1alpha1.Job) (time.Duration, error) {
	if job.Spec.TTLSecondsAfterFinished == nil || job.Status.CompletionTime == nil {
		return 0, nil
	}
	expires := job.Status.CompletionTime.Add(time.Duration(*job.Spec.TTLSecondsAfterFinished) * time.Second)
	if left := expires.Sub(c.opts.Clock.Now()); left > 0 {
		return left, nil
	}
	// The preconditions make sure it is the Job we looked at, unchanged.
	err := c.client.StargateV1alpha1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &job.UID, ResourceVersion: &job.ResourceVersion}})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err == nil {
		klog.FromContext(ctx).Info("Deleted a finished Job past its TTL", "job", klog.KObj(job))
	}
	return 0, err
}

// wait records why a Job is held back. It never changes the phase: a
// Running Job stays Running (its datacenter job goes on), a Pending one
// Pending.
func (c *Controller) wait(ctx context.Context, job *v1alpha1.Job, reason, message string) (time.Duration, error) {
	if err := c.progress(ctx, job, reason, message); err != nil {
		return 0, err
	}
	return c.opts.WaitInterval, nil
}

// progress sets a Job's reason and its Progressing condition (True while it
// runs, False while it waits), writing only when they changed and recording
// an Event when they did.
func (c *Controller) progress(ctx context.Context, job *v1alpha1.Job, reason, message string) error {
	before := job.Status.DeepCopy()
	job.Status.Reason, job.Status.Message = reason, message
	status := metav1.ConditionFalse
	if job.Status.Phase == v1alpha1.JobRunning {
		status = metav1.ConditionTrue
	}
	c.setCondition(job, ConditionProgressing, status, reason, message)
	if apiequality.Semantic.DeepEqual(before, &job.Status) {
		return nil // the same reason as before: nothing to write
	}
	if err := c.updateStatus(ctx, job); err != nil {
		return err
	}
	c.opts.Recorder.Eventf(job, nil, corev1.EventTypeNormal, reason, "Wait", "%s", message)
	return nil
}

// start sends a Job that has no datacenter job yet. The first time, it takes
// a slot of the datacenter and fixes the request (status.submission, in the
// write that also puts on the cancel-at-datacenter finalizer); from then on
// the Job keeps the slot and its Hardware until the datacenter has said what
// runs under its key.
func (c *Controller) start(ctx context.Context, job *v1alpha1.Job, dc *v1alpha1.Datacenter, client datacenter.Client) (time.Duration, error) {
	if mayHaveReached(job) && (job.Status.Submission == nil || dc.Spec.Paused) {
		// Pausing starts nothing new, but what an earlier submit started
		// goes on; and a Job an older controller may have sent without
		// recording its request is not sent again before it is known that
		// nothing runs for it. Find out which it is.
		switch found, err := c.lookUp(ctx, job, client); {
		case err != nil:
			return 0, err
		case found:
			return c.poll(ctx, job, client)
		case job.Status.Submission != nil:
			return c.wait(ctx, job, ReasonDatacenterPaused, fmt.Sprintf("Datacenter %s is paused; the Job starts when it is resumed", dc.Name))
		}
	}
	if target := meta.FindStatusCondition(job.Status.Conditions, ConditionFailureTarget); target != nil {
		return c.settle(ctx, job, client, target.Reason, target.Message) // it gave up: it only asks
	}
	if job.Status.Submission != nil {
		return c.submit(ctx, job, client, false)
	}
	if dc.Spec.Paused {
		return c.wait(ctx, job, ReasonDatacenterPaused, fmt.Sprintf("Datacenter %s is paused; the Job starts when it is resumed", dc.Name))
	}
	max := ptrValue(dc.Spec.MaxConcurrentJobs, v1alpha1.DefaultMaxConcurrentJobs)
	if !c.running.Reserve(job, int(max)) {
		return c.wait(ctx, job, ReasonDatacenterBusy, fmt.Sprintf("Datacenter %s is running its maximum of %d Jobs", dc.Name, max))
	}
	err := c.opts.Leading(ctx) // a replica that lost the lead takes no slot
	if err == nil {
		err = c.fix(ctx, job)
	}
	if err != nil || isFinished(job.Status.Phase) {
		c.running.Release(job) // nothing was sent: the slot is free again
		return 0, err
	}
	// From here the Job's own status holds the slot (RunningJobs counts
	// submitted Jobs); the reservation lapses once the cache sees it.
	return c.submit(ctx, job, client, true)
}

// fix resolves what a Job will send, once: its Hardware's MAC and IPv4 (read
// from etcd, which also shows that the Job holds the Hardware's lock) and its
// Template, and writes it to status before anything is sent.
func (c *Controller) fix(ctx context.Context, job *v1alpha1.Job) error {
	hw, err := c.client.StargateV1alpha1().Hardwares(job.Namespace).Get(ctx, job.Spec.HardwareRef.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return c.fail(ctx, job, "HardwareNotFound", fmt.Sprintf("Hardware %s no longer exists; nothing was sent", job.Spec.HardwareRef.Name))
	} else if err != nil {
		return err
	}
	if hw.Status.ActiveJob != job.Name {
		// The server locks the Hardware for a Job before storing it, so this
		// is a Job whose lock was taken over; it must not run beside the holder.
		return c.fail(ctx, job, ReasonHardwareNotHeld, fmt.Sprintf(
			"Hardware %s is held by Job %q, not by this Job; nothing was sent", hw.Name, hw.Status.ActiveJob))
	}
	sub := &v1alpha1.JobSubmission{MAC: hw.Spec.MAC, IPv4: hw.Spec.IPv4}
	if job.Spec.Operation == v1alpha1.OperationRepave {
		// From etcd too: a Template just mended must be what this Job installs.
		tmpl, err := c.client.StargateV1alpha1().Templates(job.Namespace).Get(ctx, job.Spec.TemplateRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return c.fail(ctx, job, ReasonTemplateNotFound, fmt.Sprintf("Template %s no longer exists; nothing was sent", job.Spec.TemplateRef.Name))
		} else if err != nil {
			return err
		}
		// Keep what this Job installs, so history stays true if the Template changes.
		job.Status.Template = &v1alpha1.ResolvedTemplate{OSVersion: tmpl.Spec.OSVersion, OSImage: tmpl.Spec.OSImage}
		sub.UserDataSHA256 = digest(userData(tmpl))
	}
	now := metav1.NewTime(c.opts.Clock.Now())
	job.Status.Submission, job.Status.LastAttemptTime = sub, &now
	job.Status.Reason, job.Status.Message = ReasonSubmitting, fmt.Sprintf("sending the Job to %s", job.Namespace)
	c.setCondition(job, ConditionProgressing, metav1.ConditionFalse, ReasonSubmitting, job.Status.Message)
	return c.updateStatus(ctx, job) // no Event: Submitted follows at once
}

// request is the request fixed in job's status, the same at every attempt.
// User data is not stored (it may hold secrets): it is the Template's, and
// only while it still has the digest fixed at the first attempt.
func (c *Controller) request(job *v1alpha1.Job) (datacenter.JobRequest, error) {
	sub := job.Status.Submission
	if sub == nil {
		return datacenter.JobRequest{}, fmt.Errorf("no request was fixed for the Job")
	}
	req := datacenter.JobRequest{Operation: datacenter.Operation(job.Spec.Operation),
		Machine: datacenter.Machine{MAC: sub.MAC, IPv4: sub.IPv4, Name: job.Spec.HardwareRef.Name}}
	if job.Spec.Operation != v1alpha1.OperationRepave || job.Status.Template == nil {
		return req, nil
	}
	req.Image = &datacenter.Image{URL: job.Status.Template.OSImage, Version: job.Status.Template.OSVersion}
	if sub.UserDataSHA256 == "" {
		return req, nil
	}
	tmpl, err := c.templates.Templates(job.Namespace).Get(job.Spec.TemplateRef.Name)
	if err != nil {
		return req, fmt.Errorf("Template %s: %w", job.Spec.TemplateRef.Name, err)
	}
	if digest(userData(tmpl)) != sub.UserDataSHA256 {
		return req, fmt.Errorf("the user data of Template %s changed after the first submit attempt", tmpl.Name)
	}
	req.UserData = userData(tmpl)
	return req, nil
}

// submit sends the fixed request of a Job that holds a slot of its datacenter.
// fresh says job was just written by this sync; otherwise it comes from the
// cache, which may be behind this controller's own last write (one that ended
// the Job, or spent its backoff limit), so it is checked against etcd first:
// a Submit is the one step that no resourceVersion precondition guards.
func (c *Controller) submit(ctx context.Context, job *v1alpha1.Job, client datacenter.Client, fresh bool) (time.Duration, error) {
	req, err := c.request(job)
	if err != nil {
		// The first request cannot be sent again as it was: send nothing
		// else under its key, and end only if the first never arrived.
		reason := ReasonTemplateChanged
		if apierrors.IsNotFound(err) {
			reason = ReasonTemplateNotFound
		}
		return c.settle(ctx, job, client, reason, err.Error()+"; nothing ran at the datacenter")
	}
	limit := ptrValue(job.Spec.BackoffLimit, v1alpha1.DefaultBackoffLimit)
	if job.Status.Attempts > limit {
		// It gave up earlier and could not settle then: never submit again.
		return c.settle(ctx, job, client, ReasonBackoffLimitExceeded,
			fmt.Sprintf("the datacenter failed %d times; nothing ran at the datacenter", job.Status.Attempts))
	}
	if err := c.opts.Failpoint(FailpointBeforeSubmit); err != nil {
		return 0, err
	}
	if err := c.opts.Leading(ctx); err != nil {
		return 0, err
	}
	if !fresh {
		// Record the attempt before it is sent. The write's resourceVersion
		// precondition fences it: it fails if the cached Job is behind this
		// controller's own last write (one that ended the Job, or spent its
		// backoff limit) or another replica changed the Job since.
		now := metav1.NewTime(c.opts.Clock.Now())
		job.Status.LastAttemptTime = &now
		if err := c.updateStatus(ctx, job); err != nil {
			return 0, err
		}
	}
	// The datacenter must not start anything from this request after its
	// deadline, so a submit delayed on its way cannot outlive the window in
	// which Stargate waits for it (lookUp).
	submitCtx, cancel := context.WithDeadline(ctx, job.Status.LastAttemptTime.Add(c.opts.SubmitWindow))
	defer cancel()
	job.Status.Attempts++
	dcJob, err := client.Submit(submitCtx, string(job.UID), req)
	if err != nil && req.UserData != "" {
		err = scrubbed{err: err, secret: req.UserData} // a datacenter may echo the body
	}
	if err == nil {
		if err := c.opts.Failpoint(FailpointAfterSubmit); err != nil {
			return 0, err
		}
		return c.opts.MinPollInterval, c.markRunning(ctx, job, dcJob, ReasonSubmitted, fmt.Sprintf("submitted to %s as %s", job.Namespace, dcJob.ID))
	}
	switch {
	case datacenter.IsUnavailable(err), isCredentials(err):
		// Nothing started on this attempt (the datacenter is down, or did
		// not let the request in): the Job waits for it rather than
		// spending its backoff limit. The Datacenter's probe turning Ready
		// again wakes it; so does the wait interval.
		job.Status.Attempts--
		return 0, err
	case datacenter.IsUndecodable(err):
		// The datacenter accepted something and said it unreadably: ask.
		switch found, lerr := c.lookUp(ctx, job, client); {
		case lerr != nil:
			return 0, lerr
		case found:
			return c.poll(ctx, job, client)
		}
		return 0, c.retrying(ctx, job, err)
	case datacenter.IsTransient(err):
		if job.Status.Attempts > limit {
			return c.settle(ctx, job, client, ReasonBackoffLimitExceeded,
				fmt.Sprintf("the datacenter failed %d times; last: %v; nothing ran at the datacenter", job.Status.Attempts, err))
		}
		return 0, c.retrying(ctx, job, err)
	}
	// Refused (4xx): this attempt did not start, but an earlier one may have.
	return c.settle(ctx, job, client, ReasonRejected, err.Error())
}

// retrying records a failed attempt and returns err, so the Job is retried
// with rate-limited backoff.
func (c *Controller) retrying(ctx context.Context, job *v1alpha1.Job, err error) error {
	job.Status.Reason, job.Status.Message = ReasonRetrying, err.Error()
	c.setCondition(job, ConditionProgressing, metav1.ConditionFalse, ReasonRetrying, err.Error())
	if uerr := c.updateStatus(ctx, job); uerr != nil {
		return uerr
	}
	return err
}

// markRunning records that a Job runs at its datacenter as dcJob: submitted,
// or adopted from an earlier submit whose answer was lost.
func (c *Controller) markRunning(ctx context.Context, job *v1alpha1.Job, dcJob *datacenter.Job, reason, message string) error {
	now := metav1.NewTime(c.opts.Clock.Now())
	if started := dcJob.StartedAt; started != nil && started.Before(now.Time) {
		// An adopted job's deadline runs from when it really started.
		now = metav1.NewTime(*started)
	}
	job.Status.Phase, job.Status.DCJobID, job.Status.StartTime = v1alpha1.JobRunning, dcJob.ID, &now
	job.Status.Reason, job.Status.Message = reason, message
	meta.RemoveStatusCondition(&job.Status.Conditions, ConditionFailureTarget) // it runs: it ends as the datacenter says
	c.setCondition(job, ConditionProgressing, metav1.ConditionTrue, reason, message)
	if err := c.updateStatus(ctx, job); err != nil {
		// The datacenter job exists; the next sync submits again with the
		// same key and request, and gets it back.
		return err
	}
	klog.FromContext(ctx).Info("Job running", "dcJob", dcJob.ID, "reason", reason)
	c.opts.Recorder.Eventf(job, nil, corev1.EventTypeNormal, reason, "Submit", "%s", message)
	metrics.JobsActive.WithLabelValues(job.Namespace).Set(float64(c.running.Count(job.Namespace)))
	if state := runningState(job.Spec.Operation); state != "" {
		return c.updateHardware(ctx, job, func(s *v1alpha1.HardwareStatus) { s.State = state })
	}
	return nil
}

// pollAfter is when to check a running Job again: half its running time so
// far, between MinPollInterval and PollInterval.
func (c *Controller) pollAfter(job *v1alpha1.Job) time.Duration {
	if job.Status.StartTime == nil {
		return c.opts.MinPollInterval
	}
	return min(max(c.opts.Clock.Since(job.Status.StartTime.Time)/2, c.opts.MinPollInterval), c.opts.PollInterval)
}

// poll follows a submitted Job at its datacenter.
func (c *Controller) poll(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) (time.Duration, error) {
	dcJob, err := client.GetJob(ctx, job.Status.DCJobID)
	if err != nil {
		if datacenter.IsNotFound(err) {
			return 0, c.fail(ctx, job, "DatacenterJobLost", fmt.Sprintf("the datacenter no longer knows job %s", job.Status.DCJobID))
		}
		return 0, err
	}
	switch dcJob.State {
	case datacenter.JobSucceeded:
		return 0, c.succeed(ctx, job, client)
	case datacenter.JobFailed:
		return 0, c.fail(ctx, job, ReasonDatacenterJobFailed, dcJob.Message)
	case datacenter.JobCancelled:
		return 0, c.fail(ctx, job, ReasonCancelled, "the datacenter cancelled the job")
	}
	if _, waited := waitingReasons[job.Status.Reason]; waited {
		// It waited on its datacenter (down, credentials): it runs again.
		if err := c.progress(ctx, job, ReasonRunning, fmt.Sprintf("running at %s as %s", job.Namespace, dcJob.ID)); err != nil {
			return 0, err
		}
	}
	return c.pollAfter(job), nil
}

// waitingReasons are the reasons a Running Job may wait on.
var waitingReasons = map[string]struct{}{ReasonDatacenterDown: {}, ReasonCredentialsMissing: {},
	ReasonCredentialsRejected: {}, ReasonDatacenterNotFound: {}, ReasonOutcomeUnknown: {}}

// succeed ends a Job whose datacenter job succeeded, with its Hardware ready
// (or off) and running the OS the datacenter reports.
func (c *Controller) succeed(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) error {
	osVersion := ""
	if job.Status.Template != nil {
		osVersion = job.Status.Template.OSVersion
	}
	if sub := job.Status.Submission; sub != nil {
		if m, err := client.GetMachine(ctx, sub.MAC); err == nil {
			osVersion = m.CurrentOS
		}
	}
	state := v1alpha1.HardwareStateReady
	if job.Spec.Operation == v1alpha1.OperationPowerOff {
		state = v1alpha1.HardwareStateOff
	}
	if err := c.updateHardware(ctx, job, func(s *v1alpha1.HardwareStatus) {
		s.State = state
		if osVersion != "" {
			s.CurrentOS = osVersion
		}
		meta.RemoveStatusCondition(&s.Conditions, ConditionFailed)
	}); err != nil {
		return err
	}
	now := metav1.NewTime(c.opts.Clock.Now())
	job.Status.Phase, job.Status.CompletionTime = v1alpha1.JobSucceeded, &now
	job.Status.Reason, job.Status.Message = ReasonCompleted, fmt.Sprintf("%s %s completed", job.Spec.Operation, job.Spec.HardwareRef.Name)
	c.setCondition(job, ConditionProgressing, metav1.ConditionFalse, ReasonCompleted, job.Status.Message)
	c.setCondition(job, ConditionComplete, metav1.ConditionTrue, ReasonCompleted, job.Status.Message)
	if err := c.updateStatus(ctx, job); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Job succeeded", "dcJob", job.Status.DCJobID)
	c.ended(job, corev1.EventTypeNormal, ReasonCompleted)
	return nil
}

// fail ends a Job as Failed and, if it ran at the datacenter, marks its
// Hardware in error. Callers make sure nothing runs under the Job's key.
func (c *Controller) fail(ctx context.Context, job *v1alpha1.Job, reason, message string) error {
	if job.Status.DCJobID != "" {
		err := c.updateHardware(ctx, job, func(s *v1alpha1.HardwareStatus) {
			s.State = v1alpha1.HardwareStateError
			meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: ConditionFailed, Status: metav1.ConditionTrue,
				Reason: reason, Message: fmt.Sprintf("Job %s failed: %s", job.Name, message)})
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	now := metav1.NewTime(c.opts.Clock.Now())
	job.Status.Phase, job.Status.CompletionTime = v1alpha1.JobFailed, &now
	job.Status.Reason, job.Status.Message = reason, message
	c.setCondition(job, ConditionProgressing, metav1.ConditionFalse, reason, message)
	c.setCondition(job, ConditionFailed, metav1.ConditionTrue, reason, message)
	if err := c.updateStatus(ctx, job); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Job failed", "reason", reason, "message", message)
	c.ended(job, corev1.EventTypeWarning, reason)
	return nil
}

// ended records a Job's end in metrics and an Event.
func (c *Controller) ended(job *v1alpha1.Job, eventType, reason string) {
	result := "succeeded"
	if job.Status.Phase == v1alpha1.JobFailed {
		result = "failed"
	}
	dc, op := job.Namespace, string(job.Spec.Operation)
	metrics.JobsTotal.WithLabelValues(dc, op, result).Inc()
	if job.Status.CompletionTime != nil {
		metrics.JobDuration.WithLabelValues(dc, op, result).Observe(job.Status.CompletionTime.Sub(job.CreationTimestamp.Time).Seconds())
	}
	metrics.JobsActive.WithLabelValues(dc).Set(float64(c.running.Count(dc)))
	c.opts.Recorder.Eventf(job, nil, eventType, reason, "Finish", "%s", job.Status.Message)
}

func (c *Controller) setCondition(job *v1alpha1.Job, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&job.Status.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason,
		Message: message, ObservedGeneration: job.Generation, LastTransitionTime: metav1.NewTime(c.opts.Clock.Now())})
}

// updateStatus writes job's status; the resourceVersion it carries makes a
// write based on stale data fail with a conflict, retried from the cache. The
// written metadata (resourceVersion, the finalizer the server adds with
// status.submission) is taken back into job for the next write.
func (c *Controller) updateStatus(ctx context.Context, job *v1alpha1.Job) error {
	updated, err := c.client.StargateV1alpha1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	job.ObjectMeta = updated.ObjectMeta
	return nil
}

// updateHardware applies a Job's result to its Hardware's status while the
// Job still holds the Hardware (re-reading it on conflicts: the server writes
// its lock into the same status). A Job that no longer holds it (a replica
// that lost the lead writing late, a Job whose lock was taken over) leaves it
// alone: whatever holds the Hardware now is newer.
func (c *Controller) updateHardware(ctx context.Context, job *v1alpha1.Job, mutate func(*v1alpha1.HardwareStatus)) error {
	if err := c.opts.Leading(ctx); err != nil {
		return err
	}
	hardwares := c.client.StargateV1alpha1().Hardwares(job.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		hw, err := hardwares.Get(ctx, job.Spec.HardwareRef.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if hw.Status.ActiveJob != job.Name {
			return nil
		}
		before := hw.Status.DeepCopy()
		mutate(&hw.Status)
		hw.Status.ObservedGeneration = hw.Generation
		if apiequality.Semantic.DeepEqual(before, &hw.Status) {
			return nil
		}
		_, err = hardwares.UpdateStatus(ctx, hw, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func runningState(op v1alpha1.Operation) v1alpha1.HardwareState {
	switch op {
	case v1alpha1.OperationRepave:
		return v1alpha1.HardwareStateProvisioning
	case v1alpha1.OperationReboot:
		return v1alpha1.HardwareStateRebooting
	}
	return ""
}

func userData(t *v1alpha1.Template) string {
	if t.Spec.CloudInit == nil {
		return ""
	}
	return t.Spec.CloudInit.UserData
}

func isFinished(p v1alpha1.JobPhase) bool {
	return p == v1alpha1.JobSucceeded || p == v1alpha1.JobFailed
}

func ptrValue[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// digest is the hex SHA-256 of user data ("" for none).
func digest(data string) string {
	if data == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(data))
	return hex.EncodeToString(sum[:])
}

// mayHaveReached reports whether a submit of job may have reached its
// datacenter: its request was fixed (status.submission, written before the
// first attempt), or it carries what an older controller left (the finalizer,
// attempts).
func mayHaveReached(job *v1alpha1.Job) bool {
	return job.Status.DCJobID != "" || job.Status.Submission != nil || job.Status.Attempts > 0 ||
		slices.Contains(job.Finalizers, v1alpha1.JobCancelFinalizer)
}

// clockSkew is how far the clocks of Stargate's replicas and a datacenter
// may disagree when a submit's Not-After deadline is judged.
const clockSkew = 5 * time.Second

// outcomeUnknownError is a Job that may have reached its datacenter, which
// cannot yet say what runs under its key; after, if set, is when it can.
type outcomeUnknownError struct {
	err   error
	after time.Duration
}

// scrubbed is a datacenter error whose text is shown without a secret the
// request carried (cloud-init user data), should the datacenter echo it.
type scrubbed struct {
	err    error
	secret string
}

func (s scrubbed) Error() string { return strings.ReplaceAll(s.err.Error(), s.secret, "[user data]") }

func (s scrubbed) Unwrap() error { return s.err }

func (e *outcomeUnknownError) Error() string {
	return fmt.Sprintf("a submit may have reached the datacenter, which cannot say now what runs under the Job's key (%v); "+
		"the Job waits, holding its Hardware, until it can", e.err)
}

func (e *outcomeUnknownError) Unwrap() error { return e.err }

// waitingReason is the reason a Job waits on after err, if err is one a Job
// waits out rather than retries: the datacenter cannot be asked, is down, or
// does not accept Stargate's credentials.
func waitingReason(err error) (string, bool) {
	var unknown *outcomeUnknownError
	var creds *datacenter.CredentialsError
	switch {
	case err == nil:
		return "", false
	case errors.As(err, &unknown):
		return ReasonOutcomeUnknown, true
	case errors.As(err, &creds) && creds.Missing:
		return ReasonCredentialsMissing, true
	case errors.As(err, &creds):
		return ReasonCredentialsRejected, true
	case datacenter.IsUnavailable(err):
		return ReasonDatacenterDown, true
	}
	return "", false
}

func isCredentials(err error) bool {
	var creds *datacenter.CredentialsError
	return errors.As(err, &creds)
}
