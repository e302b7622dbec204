package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/generated/clientset/versioned"
)

// waitJobs waits for each Job in ns to finish, printing
// "job.stargate.io/NAME succeeded" or "... failed: Reason: message" as each
// does; it fails when one failed, was deleted unseen, or timeout (0: none)
// passed first.
func waitJobs(ctx context.Context, client versioned.Interface, ns string, names []string, timeout time.Duration, out io.Writer) error {
	wctx, cancel := watchtools.ContextWithOptionalTimeout(ctx, timeout)
	defer cancel()
	var failed []string
	for _, name := range names {
		job, err := waitJob(wctx, client, ns, name)
		switch {
		case err != nil && ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("timed out after %s waiting for job.stargate.io/%s in %s to finish", timeout, name, ns)
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("interrupted while waiting for job.stargate.io/%s in %s", name, ns)
		case err != nil:
			return err
		case job.Status.Phase == v1alpha1.JobSucceeded:
			fmt.Fprintf(out, "job.stargate.io/%s succeeded\n", name)
		default:
			fmt.Fprintf(out, "job.stargate.io/%s failed: %s\n", name, jobFailure(job))
			failed = append(failed, name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d repave Jobs failed (kubectl describe jobs.stargate.io -n %s %s)", len(failed), len(names), ns, failed[0])
	}
	return nil
}

// jobFailure is "Reason: message" of a failed Job.
func jobFailure(job *v1alpha1.Job) string {
	switch {
	case job.Status.Reason == "":
		return job.Status.Message
	case job.Status.Message == "":
		return job.Status.Reason
	default:
		return job.Status.Reason + ": " + job.Status.Message
	}
}

// waitJob returns the Job once it succeeded or failed.
func waitJob(ctx context.Context, client versioned.Interface, ns, name string) (*v1alpha1.Job, error) {
	jobs := client.StargateV1alpha1().Jobs(ns)
	lw := byName(name, jobs.List, jobs.Watch)
	var last *v1alpha1.Job
	_, err := watchtools.UntilWithSync(ctx, cache.ToListWatcherWithWatchListSemantics(lw, client), &v1alpha1.Job{}, nil,
		func(e watch.Event) (bool, error) {
			job, ok := e.Object.(*v1alpha1.Job)
			if !ok || job.Name != name {
				return false, nil
			}
			if e.Type == watch.Deleted {
				return false, fmt.Errorf("job.stargate.io/%s in %s was deleted before it was seen to finish", name, ns)
			}
			last = job
			return job.Status.Phase == v1alpha1.JobSucceeded || job.Status.Phase == v1alpha1.JobFailed, nil
		})
	return last, err
}

// byName lists and watches the one object named name.
func byName[L runtime.Object](name string, list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) *cache.ListWatch {
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return list(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			return watchFn(ctx, opts)
		},
	}
}
