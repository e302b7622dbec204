// Package jobs is the controller that carries each Job out through the API of
// its Hardware's datacenter: Pending -> (request fixed in status.submission)
// -> Running (dcJobID saved) -> Succeeded or Failed, with the Hardware's
// status kept in step.
//
// Its one promise is never to disagree with a datacenter. Every submission
// carries the Job's UID as its idempotency key and the request fixed before
// the first attempt, so a controller that crashed (or lost an answer) submits
// the same request again and gets the same datacenter job back. Each attempt
// is recorded by a fenced status write before it is sent and carries a
// Not-After deadline, so a datacenter's "nothing under this key" is final once
// that deadline has passed. A Job that may have reached its datacenter ends
// only when the datacenter has said what ran (settle.go); until then it keeps
// its Hardware and its slot. Status writes carry resourceVersion
// preconditions, so a stale controller cannot overwrite a newer state.
//
// submit.go sends Jobs, settle.go ends them with their datacenter's word,
// this file routes and follows them.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/apis/stargate/validation"
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
	ReasonCancelledByUser      = v1alpha1.JobReasonCancelled
	ReasonDeadlineExceeded     = "DeadlineExceeded"
	ReasonDeleted              = v1alpha1.JobReasonDeleted
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
	ReasonAbandoned = v1alpha1.JobReasonAbandoned

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
	// ones cost a request every PollInterval. A datacenter that offers a
	// changes feed has it read every PollInterval instead (feed.go).
	PollInterval, MinPollInterval time.Duration
	// SafetyPollInterval is how often a Job whose datacenter's changes feed
	// vouches for it is still read on its own, in case the feed missed a
	// change. Default 5m.
	SafetyPollInterval time.Duration
	// WaitInterval is how often a Job held back by its Datacenter is looked at again.
	WaitInterval time.Duration
	// SubmitWindow bounds a submit: the request carries the deadline
	// lastAttemptTime + SubmitWindow, after which a datacenter must not start
	// it, so a lookup that finds nothing under a Job's key is final only past
	// it. It must exceed one call's retries (default 60s).
	SubmitWindow time.Duration
	// FinishedJobTTL deletes a finished Job without spec.ttlSecondsAfterFinished
	// this long after it finished (its result stays on its Hardware, in
	// status.lastJobResult), so finished Jobs do not pile up; 0 keeps them.
	FinishedJobTTL time.Duration
	// CollectInterval is how often finished Jobs are swept for those past
	// their TTL (default 30m: each sweep lists the retained history); a Job
	// with a shorter TTL gets a timer of its own.
	CollectInterval time.Duration
	// Workers is the number of workers per datacenter (default 16: most of
	// a sync is waiting on the API server and the datacenter).
	Workers int
	Clock   clock.Clock
	// Recorder records Events on phase changes (default: none).
	Recorder events.EventRecorder
	// Leading, when set, is asked right before each submit or cancel at a
	// datacenter; an error (this replica no longer drives that datacenter)
	// stops the sync there.
	Leading func(ctx context.Context, datacenter string) error
	// Owns, when set, says whether this replica drives a datacenter now:
	// the Jobs of a datacenter are synced only under Drive, and finished
	// Jobs collected only by the replica driving their datacenter. Nil: this
	// replica drives every datacenter, all the time.
	Owns func(datacenter string) bool
	// Want, when set, is told of a namespace holding finished Jobs, so that
	// some replica drives it (and collects them) even when it has no
	// Datacenter and no unfinished Job left.
	Want func(datacenter string)
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
	// feeds is what each datacenter's changes feed said (feed.go).
	feeds feeds
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
	if opts.SafetyPollInterval <= 0 {
		opts.SafetyPollInterval = DefaultSafetyPollInterval
	}
	if opts.SubmitWindow <= 0 {
		opts.SubmitWindow = time.Minute
	}
	if opts.CollectInterval <= 0 {
		opts.CollectInterval = 30 * time.Minute
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
		opts.Leading = func(context.Context, string) error { return nil }
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
	if opts.Owns != nil {
		c.queue = controller.NewDrivenShards("stargate-jobs", opts.Workers, c.sync)
	}
	if _, err := jobInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.queue.Enqueue,
		UpdateFunc: func(old, obj interface{}) {
			c.queue.Enqueue(obj)
			if oldJob, newJob := old.(*v1alpha1.Job), obj.(*v1alpha1.Job); controller.Occupies(oldJob) && !controller.Occupies(newJob) {
				c.wake(newJob.Namespace, ReasonDatacenterBusy) // a slot is free
			}
		},
		DeleteFunc: func(obj interface{}) {
			if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj // finished (or deleted) while the watch was down
			}
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

// Run processes Jobs until ctx is done: those of every datacenter, or with
// Options.Owns, those of the datacenters Drive runs for.
func (c *Controller) Run(ctx context.Context) {
	go c.collectSweep(ctx)
	if c.opts.Owns == nil { // else Drive follows each datacenter's feed
		go c.followFeeds(ctx)
	}
	c.queue.Run(ctx, c.synced...)
}

// Drive processes the Jobs of datacenter until ctx is done (this replica no
// longer drives it), starting with every unfinished Job the cache holds
// there, and returns once its workers have stopped. Call it once the caches
// are filled, and only with Options.Owns set.
func (c *Controller) Drive(ctx context.Context, datacenter string) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { c.followFeed(ctx, datacenter) })
	c.queue.Drive(ctx, datacenter, func() {
		jobs, _ := c.jobs.Jobs(datacenter).List(labels.Everything())
		for _, job := range jobs {
			c.queue.Enqueue(job)
		}
	})
}

// UnfinishedJobs is the field selector of the Job informer the controller
// needs: it keeps only unfinished Jobs cached (at a million servers the
// finished ones would be most of it); finished Jobs are read when collected.
const UnfinishedJobs = "status.phase!=Succeeded,status.phase!=Failed"

// collectSweep deletes the finished Jobs past their TTL, a page at a time,
// every CollectInterval: the cache holds no finished Jobs, and a Job this
// controller ends with a short TTL gets a timer of its own (ended).
func (c *Controller) collectSweep(ctx context.Context) {
	for {
		c.collectFinished(ctx)
		select {
		case <-ctx.Done():
			return
		case <-c.opts.Clock.After(c.opts.CollectInterval):
		}
	}
}

// collectFinished makes one pass over the finished Jobs, deleting at most
// collectRate a second (the first pass after an upgrade may find a backlog).
func (c *Controller) collectFinished(ctx context.Context) {
	limiter := flowcontrol.NewTokenBucketRateLimiterWithClock(collectRate, collectRate, c.opts.Clock)
	opts := metav1.ListOptions{FieldSelector: "status.phase!=Pending,status.phase!=Running", Limit: 500}
	for {
		page, err := c.client.StargateV1alpha1().Jobs(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			// A long pass outlives etcd's compaction: go on where the server says.
			if next, ok := controller.ContinueAfterExpiry(err); ok {
				opts.Continue = next
				continue
			}
			if ctx.Err() == nil {
				klog.FromContext(ctx).Error(err, "Listing finished Jobs to collect")
			}
			return
		}
		for i := range page.Items {
			job := &page.Items[i]
			if c.opts.Owns != nil && !c.opts.Owns(job.Namespace) {
				if c.opts.Want != nil {
					c.opts.Want(job.Namespace) // its driver collects it
				}
				continue
			}
			if isFinished(job.Status.Phase) {
				if left, ok := c.expiresIn(job); !ok || left > 0 {
					continue
				}
				if err := limiter.Wait(ctx); err != nil {
					return
				}
				if _, err := c.collect(ctx, job); err != nil && ctx.Err() == nil {
					klog.FromContext(ctx).Error(err, "Collecting a finished Job", "job", klog.KObj(job))
				}
			}
		}
		if opts.Continue = page.Continue; opts.Continue == "" {
			return
		}
	}
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
		// Finished Jobs are not cached (or the cache has not seen it yet):
		// read it, from the watch cache, to collect or drive it.
		cached, err = c.client.StargateV1alpha1().Jobs(ns).Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		if err == nil && !isFinished(cached.Status.Phase) {
			return 0, nil // not in the cache yet: the informer brings it
		}
	}
	if err != nil {
		return 0, err
	}
	if isFinished(cached.Status.Phase) {
		left, err := c.collect(ctx, cached)
		if left >= c.opts.CollectInterval {
			left = 0 // no long timers: the sweep collects it
		}
		return left, err
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
			if len(job.Finalizers) == 0 {
				return 0, nil // never sent anywhere: the deletion goes on by itself
			}
			// Never sent, but another finalizer (its Campaign's, until it
			// counted the Job) keeps it: end it, so that holder sees it ended
			// and its Hardware is free.
			return 0, c.fail(ctx, job, ReasonDeleted, "the Job was deleted before it was sent to its datacenter")
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

// deadline is the time a running Job has left before activeDeadlineSeconds.
func (c *Controller) deadline(job *v1alpha1.Job) (time.Duration, bool) {
	if job.Spec.ActiveDeadlineSeconds == nil || job.Status.StartTime == nil {
		return 0, false
	}
	end := job.Status.StartTime.Add(time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second)
	return end.Sub(c.opts.Clock.Now()), true
}

// collect deletes a finished Job once its ttlSecondsAfterFinished has passed,
// and says when to come back before that.
func (c *Controller) collect(ctx context.Context, job *v1alpha1.Job) (time.Duration, error) {
	left, ok := c.expiresIn(job)
	if !ok {
		return 0, nil
	}
	if left > 0 {
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

// collectRate bounds how many finished Jobs a collection pass deletes a second.
const collectRate = 20

// expiresIn is how long a finished Job has left before its TTL; false when
// it is kept for good. Its end is status.completionTime or, for a status
// written without one, when its Complete or Failed condition became true.
func (c *Controller) expiresIn(job *v1alpha1.Job) (time.Duration, bool) {
	ttl, ok := c.ttl(job)
	if !ok {
		return 0, false
	}
	var end time.Time
	switch {
	case job.Status.CompletionTime != nil:
		end = job.Status.CompletionTime.Time
	case meta.IsStatusConditionTrue(job.Status.Conditions, ConditionComplete):
		end = meta.FindStatusCondition(job.Status.Conditions, ConditionComplete).LastTransitionTime.Time
	case meta.IsStatusConditionTrue(job.Status.Conditions, ConditionFailed):
		end = meta.FindStatusCondition(job.Status.Conditions, ConditionFailed).LastTransitionTime.Time
	default:
		return 0, false // no record of when it ended: kept
	}
	return end.Add(ttl).Sub(c.opts.Clock.Now()), true
}

// ttl is how long a finished Job is kept: its own ttlSecondsAfterFinished, or
// FinishedJobTTL; false when it is kept for good.
func (c *Controller) ttl(job *v1alpha1.Job) (time.Duration, bool) {
	if t := job.Spec.TTLSecondsAfterFinished; t != nil {
		return time.Duration(*t) * time.Second, true
	}
	return c.opts.FinishedJobTTL, c.opts.FinishedJobTTL > 0
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
	job.Status.Reason, job.Status.Message = reason, message
	status := metav1.ConditionFalse
	if job.Status.Phase == v1alpha1.JobRunning {
		status = metav1.ConditionTrue
	}
	c.setCondition(job, ConditionProgressing, status, reason, message)
	// Compared with what is stored, not with what this sync started from: a
	// step may have changed the status already (a decision, an attempt).
	if stored, err := c.jobs.Jobs(job.Namespace).Get(job.Name); err == nil && stored.ResourceVersion == job.ResourceVersion &&
		apiequality.Semantic.DeepEqual(stored.Status, job.Status) {
		return nil // the same reason as before: nothing to write
	}
	if err := c.updateStatus(ctx, job); err != nil {
		return err
	}
	c.opts.Recorder.Eventf(job, nil, corev1.EventTypeNormal, reason, "Wait", "%s", message)
	return nil
}

// pollAfter is when to check a running Job again: half its running time so
// far, between MinPollInterval and PollInterval; while its datacenter's
// changes feed vouches for it, at its next safety read.
func (c *Controller) pollAfter(job *v1alpha1.Job) time.Duration {
	if next, ok := c.nextReadAt(job); ok {
		return max(next.Sub(c.opts.Clock.Now()), c.opts.MinPollInterval)
	}
	if job.Status.StartTime == nil {
		return c.opts.MinPollInterval
	}
	return min(max(c.opts.Clock.Since(job.Status.StartTime.Time)/2, c.opts.MinPollInterval), c.opts.PollInterval)
}

// poll follows a submitted Job at its datacenter: a GetJob, or what its
// changes feed said (readJob).
func (c *Controller) poll(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) (time.Duration, error) {
	dcJob, err := c.readJob(ctx, job, client)
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

// succeed ends a Job whose datacenter job succeeded, recording the OS the
// datacenter reports on the machine. The server, in the same request, sets
// the Hardware ready (or off) with that OS, and releases it.
func (c *Controller) succeed(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) error {
	if job.Status.Template != nil {
		job.Status.CurrentOS = job.Status.Template.OSVersion
	}
	if sub := job.Status.Submission; sub != nil {
		if m, err := client.GetMachine(ctx, sub.MAC); err == nil && m.CurrentOS != "" {
			job.Status.CurrentOS = m.CurrentOS
			if len(m.CurrentOS) > validation.MaxTextLength { // what the API takes
				job.Status.CurrentOS = m.CurrentOS[:validation.MaxTextLength]
			}
		}
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

// fail ends a Job as Failed. The server, in the same request, marks its
// Hardware in error if it ran at the datacenter (unknown if abandoned), and
// releases it. Callers make sure nothing runs under the Job's key.
func (c *Controller) fail(ctx context.Context, job *v1alpha1.Job, reason, message string) error {
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
	// The cache drops finished Jobs: one that must go before the next sweep
	// gets a timer; the sweep collects the rest.
	if ttl, ok := c.ttl(job); ok && ttl < c.opts.CollectInterval {
		c.queue.AddAfter(job.Namespace+"/"+job.Name, ttl)
	}
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

func isFinished(p v1alpha1.JobPhase) bool {
	return p == v1alpha1.JobSucceeded || p == v1alpha1.JobFailed
}

func ptrValue[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
