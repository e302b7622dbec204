package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
)

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
// without asking its datacenter. The server says on its Hardware that the
// machine's state is unknown when the Job may have reached the datacenter:
// whatever it started there may still run.
func (c *Controller) abandon(ctx context.Context, job *v1alpha1.Job) error {
	message := "abandoned by an operator (label " + v1alpha1.JobAbandonLabel + "=true)"
	if mayHaveReached(job) {
		message += "; the datacenter was not asked what runs under the Job's key: check the machine before using it"
	}
	return c.fail(ctx, job, ReasonAbandoned, message)
}

// stop ends a Job that was cancelled, deleted or ran past its deadline. A Job
// that may have reached its datacenter is cancelled there first, and ends
// only once the datacenter says its job stopped (as the datacenter says: a
// job that succeeded meanwhile makes the Job succeed, one that failed
// meanwhile makes it fail with the datacenter's reason).
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
	if err := c.opts.Leading(ctx, job.Namespace); err != nil {
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
	case dcJob.State == datacenter.JobFailed:
		// It failed before the cancel reached it: a failure, which a
		// Campaign's failure budgets count, not a cancellation.
		return 0, c.fail(ctx, job, ReasonDatacenterJobFailed, dcJob.Message)
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
		if job.Status.LastAttemptTime == nil {
			// Left by an older controller, whose submits carried no
			// deadline: record now as the start of the window and wait it out.
			now := metav1.NewTime(c.opts.Clock.Now().Truncate(time.Second))
			job.Status.LastAttemptTime = &now
			if err := c.updateStatus(ctx, job); err != nil {
				return false, err
			}
		}
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
