package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller/metrics"
	"stargate.io/stargate/pkg/datacenter"
)

// start sends a Job that has no datacenter job yet. The first time, it takes
// a slot of the datacenter and fixes the request (status.submission, in the
// write that also puts on the cancel-at-datacenter finalizer); from then on
// the Job keeps the slot and its Hardware until the datacenter has said what
// runs under its key.
func (c *Controller) start(ctx context.Context, job *v1alpha1.Job, dc *v1alpha1.Datacenter, client datacenter.Client) (time.Duration, error) {
	if target := meta.FindStatusCondition(job.Status.Conditions, ConditionFailureTarget); target != nil {
		return c.settle(ctx, job, client, target.Reason, target.Message) // it gave up: it only asks, paused or not
	}
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
	if job.Status.Submission != nil {
		return c.submit(ctx, job, client, false)
	}
	if dc.Spec.Paused {
		return c.wait(ctx, job, ReasonDatacenterPaused, fmt.Sprintf("Datacenter %s is paused; the Job starts when it is resumed", dc.Name))
	}
	max := maxJobs(dc)
	if !c.running.Reserve(job, int(max)) {
		return c.wait(ctx, job, ReasonDatacenterBusy, fmt.Sprintf("Datacenter %s is running its maximum of %d Jobs", dc.Name, max))
	}
	err := c.opts.Leading(ctx, job.Namespace) // a replica that lost the lead takes no slot
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
	now := metav1.NewTime(c.opts.Clock.Now().Truncate(time.Second)) // as stored: the deadline is what lookUp reads back
	job.Status.Submission, job.Status.LastAttemptTime = sub, &now
	job.Status.Reason, job.Status.Message = ReasonSubmitting, fmt.Sprintf("sending the Job to %s", job.Namespace)
	c.setCondition(job, ConditionProgressing, metav1.ConditionFalse, ReasonSubmitting, job.Status.Message)
	return c.updateStatus(ctx, job) // no Event: Submitted follows at once
}

// errTemplateChanged: the Template's user data no longer has the digest fixed
// with the request.
var errTemplateChanged = errors.New("Template changed")

// request is the request fixed in job's status, the same at every attempt.
// User data is not stored (it may hold secrets): it is the Template's, and
// only while it still has the digest fixed at the first attempt.
func (c *Controller) request(ctx context.Context, job *v1alpha1.Job) (datacenter.JobRequest, error) {
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
	// From etcd, as fix() read it: a cache behind it would look like a change.
	tmpl, err := c.client.StargateV1alpha1().Templates(job.Namespace).Get(ctx, job.Spec.TemplateRef.Name, metav1.GetOptions{})
	if err != nil {
		return req, fmt.Errorf("Template %s: %w", job.Spec.TemplateRef.Name, err)
	}
	if digest(userData(tmpl)) != sub.UserDataSHA256 {
		return req, fmt.Errorf("%w: the user data of Template %s changed after the first submit attempt", errTemplateChanged, tmpl.Name)
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
	req, err := c.request(ctx, job)
	if apierrors.IsNotFound(err) || errors.Is(err, errTemplateChanged) {
		// The first request cannot be sent again as it was: send nothing
		// else under its key, and end only if the first never arrived.
		reason := ReasonTemplateChanged
		if apierrors.IsNotFound(err) {
			reason = ReasonTemplateNotFound
		}
		return c.settle(ctx, job, client, reason, err.Error()+"; nothing ran at the datacenter")
	} else if err != nil {
		return 0, err
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
	if err := c.opts.Leading(ctx, job.Namespace); err != nil {
		return 0, err
	}
	if full, err := c.overCommitted(ctx, job); err != nil || full {
		if err != nil {
			return 0, err
		}
		return c.yieldSlot(ctx, job, client)
	}
	if !fresh {
		// Record the attempt before it is sent. The write's resourceVersion
		// precondition fences it: it fails if the cached Job is behind this
		// controller's own last write (one that ended the Job, or spent its
		// backoff limit) or another replica changed the Job since.
		now := metav1.NewTime(c.opts.Clock.Now().Truncate(time.Second)) // as stored
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
	case datacenter.IsUnavailable(err), datacenter.IsUnauthorized(err):
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
	case datacenter.IsTooLate(err), datacenter.IsTransient(err):
		// A 412 says the request arrived past its deadline and started
		// nothing: the next attempt carries a new one.
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
// or adopted from an earlier submit whose answer was lost. The server then
// sets its Hardware's state (provisioning, rebooting).
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
	return nil
}

func userData(t *v1alpha1.Template) string {
	if t.Spec.CloudInit == nil {
		return ""
	}
	return t.Spec.CloudInit.UserData
}

// digest is the hex SHA-256 of user data ("" for none).
func digest(data string) string {
	if data == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(data))
	return hex.EncodeToString(sum[:])
}

// scrubbed is a datacenter error whose text is shown without a secret the
// request carried (cloud-init user data), should the datacenter echo it.
type scrubbed struct {
	err    error
	secret string
}

func (s scrubbed) Error() string { return strings.ReplaceAll(s.err.Error(), s.secret, "[user data]") }

func (s scrubbed) Unwrap() error { return s.err }

// overCommitted reports whether more Jobs than its maximum hold slots of the
// datacenter, counted in etcd (a consistent list). Each replica counts slots
// in its own cache, so a replica that lost the lead between its check and its
// claim can claim one the new leader also gave away. Every claim is written
// before this count, so of two Jobs claiming the last slot the one counting
// last sees both: at most maxConcurrentJobs are ever sent.
func (c *Controller) overCommitted(ctx context.Context, job *v1alpha1.Job) (bool, error) {
	dc, err := c.dcs.Get(job.Namespace)
	if err != nil {
		return false, err
	}
	max := maxJobs(dc)
	list, err := c.client.StargateV1alpha1().Jobs(job.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "status.occupying=true"})
	if err != nil {
		return false, err
	}
	occupying := 0
	for i := range list.Items {
		if list.Items[i].Occupies() {
			occupying++
		}
	}
	return occupying > max, nil
}

// yieldSlot gives back the slot of a Job that found its datacenter
// over-committed, once the datacenter says nothing runs under its key (a job
// there is adopted: it runs, and was counted). The Job then waits for a slot
// as one never sent.
func (c *Controller) yieldSlot(ctx context.Context, job *v1alpha1.Job, client datacenter.Client) (time.Duration, error) {
	switch found, err := c.lookUp(ctx, job, client); {
	case err != nil:
		return 0, err
	case found:
		return c.poll(ctx, job, client)
	}
	job.Status.Submission, job.Status.LastAttemptTime = nil, nil
	after, err := c.wait(ctx, job, ReasonDatacenterBusy, fmt.Sprintf(
		"Datacenter %s had more Jobs holding slots than its maximum (a replica that lost the lead claimed one); this one gave its slot back and waits",
		job.Namespace))
	if err == nil {
		c.running.Release(job)
	}
	return after, err
}

// maxJobs is a Datacenter's maxConcurrentJobs, defaulted.
func maxJobs(dc *v1alpha1.Datacenter) int {
	return int(ptrValue(dc.Spec.MaxConcurrentJobs, v1alpha1.DefaultMaxConcurrentJobs))
}
