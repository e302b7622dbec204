package joblock

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/validation"
)

// The Hardware follows its Job: the server, not the controller, writes what
// a Job's progress means for its Hardware, in the hooks of the Job's own
// writes. That saves two API writes per Job (Hardware busy, Hardware done),
// and the Hardware's end state goes into the same etcd write that releases
// the lock.

// FollowJob sets on status what job, which holds the Hardware, says about
// it: busy while the Job runs at its datacenter (provisioning for a repave,
// rebooting for a reboot; power operations leave the state alone), and when
// it ended, ready (off after a power-off) with the OS the datacenter
// reported, error if it failed after reaching the datacenter, or unknown if
// an operator abandoned it after it may have. A Job that failed before
// reaching its datacenter changed nothing on the machine and leaves the
// state as it was.
func FollowJob(job *stargate.Job, status *stargate.HardwareStatus, now time.Time) {
	switch job.Status.Phase {
	case stargate.JobRunning:
		switch job.Spec.Operation {
		case stargate.OperationRepave:
			status.State = stargate.HardwareStateProvisioning
		case stargate.OperationReboot:
			status.State = stargate.HardwareStateRebooting
		}
	case stargate.JobSucceeded:
		status.State = stargate.HardwareStateReady
		if job.Spec.Operation == stargate.OperationPowerOff {
			status.State = stargate.HardwareStateOff
		}
		if os := job.Status.CurrentOS; os != "" && len(os) <= validation.MaxTextLength { // validated on the Job too
			status.CurrentOS = os
		}
		meta.RemoveStatusCondition(&status.Conditions, stargate.HardwareConditionFailed)
	case stargate.JobFailed:
		reached := job.Status.DCJobID != "" || job.Status.Submission != nil
		switch {
		case job.Status.Reason == stargate.JobReasonAbandoned && reached:
			status.State = stargate.HardwareStateUnknown
			setFailed(status, job, fmt.Sprintf("Job %s was %s", job.Name, job.Status.Message), now)
		case job.Status.Reason != stargate.JobReasonAbandoned && job.Status.DCJobID != "":
			status.State = stargate.HardwareStateError
			setFailed(status, job, fmt.Sprintf("Job %s failed: %s", job.Name, job.Status.Message), now)
		}
	}
}

func setFailed(status *stargate.HardwareStatus, job *stargate.Job, message string, now time.Time) {
	if len(message) > maxConditionMessage { // the Job's own message may be as long
		message = message[:maxConditionMessage]
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: stargate.HardwareConditionFailed, Status: metav1.ConditionTrue,
		Reason: job.Status.Reason, Message: message, LastTransitionTime: metav1.NewTime(now)})
}

// maxConditionMessage is how long a condition's message may be
// (metav1validation.ValidateConditions).
const maxConditionMessage = 32768

// follow writes what a running Job says about the Hardware it holds (see
// FollowJob), if that changes anything. Like release, a failure is logged:
// the hooks cannot fail the Job's request, which is already stored.
func (l *Lock) follow(job *stargate.Job) {
	namespace, hwName := job.Namespace, job.Spec.HardwareRef.Name
	ctx := genericapirequest.WithNamespace(context.Background(), namespace)
	_, _, err := l.hardware.Update(ctx, hwName, rest.DefaultUpdatedObjectInfo(nil,
		func(ctx context.Context, _, old runtime.Object) (runtime.Object, error) {
			hw := old.(*stargate.Hardware)
			if hw.Status.ActiveJob != job.Name {
				return hw, nil // not (or no longer) this Job's: leave it to its holder
			}
			hw = hw.DeepCopy()
			FollowJob(job, &hw.Status, l.clock.Now())
			hw.Status.ObservedGeneration = hw.Generation
			return hw, nil // unchanged bytes are not written
		}), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		klog.ErrorS(err, "Could not set the state of a Hardware its running Job holds",
			"hardware", klog.KRef(namespace, hwName), "job", job.Name)
	}
}
