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
	"encoding/json"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller"
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

	ConditionProgressing = "Progressing"
	ConditionComplete    = "Complete"
	ConditionFailed      = "Failed"
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
	hardware  listers.HardwareLister
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
func New(client clientset.Interface, jobInformer informers.JobInformer, hwInformer informers.HardwareInformer,
	tmplInformer informers.TemplateInformer, dcInformer informers.DatacenterInformer, clientFor dcclients.ClientFor, opts Options) (*Controller, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.MinPollInterval <= 0 || opts.MinPollInterval > opts.PollInterval {
		opts.MinPollInterval = min(100*time.Millisecond, opts.PollInterval)
	}
	if opts.WaitInterval <= 0 {
		opts.WaitInterval = 10 * time.Second
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
		client: client, jobs: jobInformer.Lister(), hardware: hwInformer.Lister(), templates: tmplInformer.Lister(),
		dcs: dcInformer.Lister(), clientFor: clientFor, opts: opts,
		synced: []cache.InformerSynced{jobInformer.Informer().HasSynced, hwInformer.Informer().HasSynced,
			tmplInformer.Informer().HasSynced, dcInformer.Informer().HasSynced},
	}
	c.running = controller.NewRunningJobs(jobInformer.Informer())
	c.queue = controller.NewShards("stargate-jobs", opts.Workers, c.sync)
	if _, err := jobInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.queue.Enqueue,
		UpdateFunc: func(_, obj interface{}) { c.queue.Enqueue(obj) },
	}); err != nil {
		return nil, err
	}
	// A Datacenter that appears, unpauses or frees capacity lets its waiting Jobs start.
	if _, err := dcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueDatacenter,
		UpdateFunc: func(_, obj interface{}) { c.enqueueDatacenter(obj) },
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Controller) enqueueDatacenter(obj interface{}) {
	dc, ok := obj.(*v1alpha1.Datacenter)
	if !ok {
		return
	}
	jobs, err := c.jobs.Jobs(dc.Name).List(labels.Everything())
	if err != nil {
		return
	}
	for _, j := range jobs {
		if j.Status.Phase == v1alpha1.JobPending || j.Status.Phase == "" {
			c.queue.Enqueue(j)
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

	dc, err := c.dcs.Get(ns)
	if apierrors.IsNotFound(err) {
		return c.wait(ctx, job, ReasonDatacenterNotFound, fmt.Sprintf("no Datacenter named %s governs namespace %s", ns, ns))
	}
	if err != nil {
		return 0, err
	}
	client, err := c.clientFor(dc)
	if err != nil {
		return 0, fmt.Errorf("datacenter %s: %w", dc.Name, err)
	}
	if job.DeletionTimestamp != nil {
		return 0, c.finalize(ctx, job, client)
	}
	if job.Spec.Cancel {
		return 0, c.stop(ctx, job, client, ReasonCancelledByUser, "cancelled by spec.cancel")
	}
	if remaining, ok := c.deadline(job); ok && remaining <= 0 {
		return 0, c.stop(ctx, job, client, ReasonDeadlineExceeded,
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

// finalize cancels at its datacenter a Job deleted before it finished. If the
// controller may have submitted it without saving dcJobID (a crash between
// the two), the datacenter is asked for the job by its idempotency key. The
// status write that ends the Job also drops the finalizer, and the Job goes.
func (c *Controller) finalize(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) error {
	if !slices.Contains(job.Finalizers, v1alpha1.JobCancelFinalizer) {
		return nil // never sent anywhere: nothing to cancel, the deletion goes on by itself
	}
	if job.Status.DCJobID == "" {
		dcJob, err := client.FindJob(ctx, string(job.UID))
		switch {
		case datacenter.IsNotFound(err): // never reached the datacenter
		case err != nil:
			return err
		default:
			job.Status.DCJobID = dcJob.ID
		}
	}
	return c.stop(ctx, job, client, ReasonDeleted, "the Job was deleted before it finished")
}

// stop cancels a Job at its datacenter (if it got there) and fails it, unless
// the datacenter had already finished it: then it ends as the datacenter says.
func (c *Controller) stop(ctx context.Context, job *v1alpha1.Job, client datacenter.Client, reason, message string) error {
	if job.Status.DCJobID != "" {
		if err := c.opts.Leading(ctx); err != nil {
			return err
		}
		dcJob, err := client.Cancel(ctx, job.Status.DCJobID)
		switch {
		case datacenter.IsNotFound(err):
		case err != nil:
			return err // retried: the datacenter must hear of it
		case dcJob.State == datacenter.JobSucceeded:
			return c.succeed(ctx, job, client)
		}
	}
	return c.fail(ctx, job, reason, message)
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

// wait keeps a Job Pending with a condition saying why.
func (c *Controller) wait(ctx context.Context, job *v1alpha1.Job, reason, message string) (time.Duration, error) {
	before := job.Status.DeepCopy()
	job.Status.Phase = v1alpha1.JobPending
	job.Status.Reason, job.Status.Message = reason, message
	c.setCondition(job, ConditionProgressing, metav1.ConditionFalse, reason, message)
	if apiequality.Semantic.DeepEqual(before, &job.Status) {
		return c.opts.WaitInterval, nil // still waiting for the same reason: nothing to write
	}
	if err := c.updateStatus(ctx, job); err != nil {
		return 0, err
	}
	c.opts.Recorder.Eventf(job, nil, corev1.EventTypeNormal, reason, "Wait", "%s", message)
	return c.opts.WaitInterval, nil
}

// start submits a Pending Job to its datacenter.
func (c *Controller) start(ctx context.Context, job *v1alpha1.Job, dc *v1alpha1.Datacenter, client datacenter.Client) (time.Duration, error) {
	if dc.Spec.Paused {
		return c.wait(ctx, job, ReasonDatacenterPaused, fmt.Sprintf("Datacenter %s is paused; the Job starts when it is resumed", dc.Name))
	}
	max := ptrValue(dc.Spec.MaxConcurrentJobs, v1alpha1.DefaultMaxConcurrentJobs)
	if !c.running.Reserve(job, int(max)) {
		return c.wait(ctx, job, ReasonDatacenterBusy, fmt.Sprintf("Datacenter %s is running its maximum of %d Jobs", dc.Name, max))
	}
	after, err := c.submit(ctx, job, client)
	if err != nil || job.Status.Phase != v1alpha1.JobRunning {
		c.running.Release(job) // it did not start: the slot is free again
	}
	return after, err
}

// submit sends a Job that holds a slot of its datacenter there.
func (c *Controller) submit(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) (time.Duration, error) {
	hw, err := c.hardware.Hardwares(job.Namespace).Get(job.Spec.HardwareRef.Name)
	if err != nil {
		return 0, fmt.Errorf("hardware %s: %w", job.Spec.HardwareRef.Name, err)
	}
	// The finalizer goes on before anything is sent, so a Job deleted from
	// here on is cancelled at the datacenter rather than left running there.
	if !slices.Contains(job.Finalizers, v1alpha1.JobCancelFinalizer) {
		if err := c.addFinalizer(ctx, job); err != nil {
			return 0, err
		}
	}
	if err := c.opts.Failpoint(FailpointBeforeSubmit); err != nil {
		return 0, err
	}
	req := datacenter.JobRequest{Operation: datacenter.Operation(job.Spec.Operation),
		Machine: datacenter.Machine{MAC: hw.Spec.MAC, IPv4: hw.Spec.IPv4, Name: hw.Name}}
	if job.Spec.Operation == v1alpha1.OperationRepave {
		if job.Status.Template == nil {
			tmpl, err := c.templates.Templates(job.Namespace).Get(job.Spec.TemplateRef.Name)
			if apierrors.IsNotFound(err) {
				return 0, c.fail(ctx, job, "TemplateNotFound", fmt.Sprintf("Template %s no longer exists", job.Spec.TemplateRef.Name))
			} else if err != nil {
				return 0, err
			}
			// Keep what this Job installs, so history stays true if the Template changes.
			job.Status.Template = &v1alpha1.ResolvedTemplate{OSVersion: tmpl.Spec.OSVersion, OSImage: tmpl.Spec.OSImage}
			req.UserData = userData(tmpl)
		} else if tmpl, err := c.templates.Templates(job.Namespace).Get(job.Spec.TemplateRef.Name); err == nil {
			req.UserData = userData(tmpl)
		}
		req.Image = &datacenter.Image{URL: job.Status.Template.OSImage, Version: job.Status.Template.OSVersion}
	}

	if err := c.opts.Leading(ctx); err != nil {
		return 0, err
	}
	job.Status.Attempts++
	dcJob, err := client.Submit(ctx, string(job.UID), req)
	if err == nil {
		err = c.opts.Failpoint(FailpointAfterSubmit)
		if err != nil {
			return 0, err
		}
	}
	switch {
	case err == nil:
	case datacenter.IsUnavailable(err):
		// A datacenter that is down did not start anything: the Job waits
		// for it, as for a paused one, rather than spending its backoff
		// limit on an outage. The Datacenter's probe turning Ready again
		// wakes it; so does the wait interval.
		job.Status.Attempts--
		return c.wait(ctx, job, ReasonDatacenterDown,
			fmt.Sprintf("Datacenter %s is unavailable (%v); the Job starts when it is back", job.Namespace, err))
	case datacenter.IsTransient(err):
		limit := ptrValue(job.Spec.BackoffLimit, v1alpha1.DefaultBackoffLimit)
		if job.Status.Attempts > limit {
			return 0, c.fail(ctx, job, ReasonBackoffLimitExceeded,
				fmt.Sprintf("the datacenter failed %d times; last: %v", job.Status.Attempts, err))
		}
		job.Status.Reason, job.Status.Message = ReasonRetrying, err.Error()
		c.setCondition(job, ConditionProgressing, metav1.ConditionFalse, ReasonRetrying, err.Error())
		if uerr := c.updateStatus(ctx, job); uerr != nil {
			return 0, uerr
		}
		return 0, err // retried with rate-limited backoff
	default:
		return 0, c.fail(ctx, job, ReasonRejected, err.Error())
	}

	now := metav1.NewTime(c.opts.Clock.Now())
	job.Status.Phase, job.Status.DCJobID, job.Status.StartTime = v1alpha1.JobRunning, dcJob.ID, &now
	job.Status.Reason, job.Status.Message = ReasonSubmitted, fmt.Sprintf("submitted to %s as %s", job.Namespace, dcJob.ID)
	c.setCondition(job, ConditionProgressing, metav1.ConditionTrue, ReasonSubmitted, job.Status.Message)
	if err := c.updateStatus(ctx, job); err != nil {
		// The datacenter job exists; the next sync submits again with the
		// same key and gets it back.
		return 0, err
	}
	klog.FromContext(ctx).Info("Job submitted", "dcJob", dcJob.ID)
	c.opts.Recorder.Eventf(job, nil, corev1.EventTypeNormal, ReasonSubmitted, "Submit", "%s", job.Status.Message)
	metrics.JobsActive.WithLabelValues(job.Namespace).Set(float64(c.running.Count(job.Namespace)))
	if state := runningState(job.Spec.Operation); state != "" {
		if err := c.updateHardware(ctx, job.Namespace, hw.Name, func(s *v1alpha1.HardwareStatus) { s.State = state }); err != nil {
			return 0, err
		}
	}
	return c.opts.MinPollInterval, nil
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
	return c.pollAfter(job), nil
}

// succeed ends a Job whose datacenter job succeeded, with its Hardware ready
// (or off) and running the OS the datacenter reports.
func (c *Controller) succeed(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) error {
	osVersion := ""
	if job.Status.Template != nil {
		osVersion = job.Status.Template.OSVersion
	}
	if m, err := client.GetMachine(ctx, c.macOf(job)); err == nil {
		osVersion = m.CurrentOS
	}
	state := v1alpha1.HardwareStateReady
	if job.Spec.Operation == v1alpha1.OperationPowerOff {
		state = v1alpha1.HardwareStateOff
	}
	if err := c.updateHardware(ctx, job.Namespace, job.Spec.HardwareRef.Name, func(s *v1alpha1.HardwareStatus) {
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

// fail ends a Job as Failed and marks its Hardware in error.
func (c *Controller) fail(ctx context.Context, job *v1alpha1.Job, reason, message string) error {
	if job.Status.DCJobID != "" {
		err := c.updateHardware(ctx, job.Namespace, job.Spec.HardwareRef.Name, func(s *v1alpha1.HardwareStatus) {
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

// addFinalizer puts the cancel-at-datacenter finalizer on job and takes the
// new metadata (resourceVersion) into it; the resourceVersion in the patch
// makes it fail if the Job changed meanwhile.
func (c *Controller) addFinalizer(ctx context.Context, job *v1alpha1.Job) error {
	patch, err := json.Marshal(map[string]interface{}{"metadata": map[string]interface{}{
		"finalizers":      append(slices.Clone(job.Finalizers), v1alpha1.JobCancelFinalizer),
		"resourceVersion": job.ResourceVersion,
	}})
	if err != nil {
		return err
	}
	patched, err := c.client.StargateV1alpha1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return err
	}
	job.ObjectMeta = patched.ObjectMeta
	return nil
}

func (c *Controller) setCondition(job *v1alpha1.Job, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&job.Status.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason,
		Message: message, ObservedGeneration: job.Generation, LastTransitionTime: metav1.NewTime(c.opts.Clock.Now())})
}

// updateStatus writes job's status; the resourceVersion it carries makes a
// write based on stale data fail with a conflict, retried from the cache.
func (c *Controller) updateStatus(ctx context.Context, job *v1alpha1.Job) error {
	_, err := c.client.StargateV1alpha1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{})
	return err
}

// updateHardware changes a Hardware's status, re-reading it on conflicts (the
// server writes its lock into the same status).
func (c *Controller) updateHardware(ctx context.Context, ns, name string, mutate func(*v1alpha1.HardwareStatus)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		hw, err := c.client.StargateV1alpha1().Hardwares(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		before := hw.Status.DeepCopy()
		mutate(&hw.Status)
		hw.Status.ObservedGeneration = hw.Generation
		if apiequality.Semantic.DeepEqual(before, &hw.Status) {
			return nil
		}
		_, err = c.client.StargateV1alpha1().Hardwares(ns).UpdateStatus(ctx, hw, metav1.UpdateOptions{})
		return err
	})
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

// macOf is the MAC of a Job's Hardware, or "" if it is gone.
func (c *Controller) macOf(job *v1alpha1.Job) string {
	if hw, err := c.hardware.Hardwares(job.Namespace).Get(job.Spec.HardwareRef.Name); err == nil {
		return hw.Spec.MAC
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
