package hardware

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
)

// jobPolicy labels every Job in mutating admission and, in validating
// admission, refuses those whose ActiveDeadlineSeconds is 666, with 422.
type jobPolicy struct {
	seen []admission.Attributes
}

func (p *jobPolicy) Handles(admission.Operation) bool { return true }

func (p *jobPolicy) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	p.seen = append(p.seen, a)
	if job, ok := a.GetObject().(*stargate.Job); ok {
		job.Labels["policy.example.com/admitted"] = "true"
	}
	return nil
}

func (p *jobPolicy) Validate(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	p.seen = append(p.seen, a)
	job, ok := a.GetObject().(*stargate.Job)
	if !ok {
		return nil
	}
	if job.Labels["policy.example.com/admitted"] != "true" {
		return errors.New("validating admission ran before mutating admission")
	}
	if d := job.Spec.ActiveDeadlineSeconds; d != nil && *d == 666 {
		return apierrors.NewInvalid(stargate.Kind("Job"), a.GetName(), nil)
	}
	return nil
}

// TestRepaveAdmitsTheJob: the Job /repave creates is admitted as a create of
// stargate.io/v1alpha1 jobs, mutated, and refused with the policy's error.
func TestRepaveAdmitsTheJob(t *testing.T) {
	policy := &jobPolicy{}
	e := newRepaveEnvAdmitting(t, policy)
	ctx := genericapirequest.WithUser(e.ctx, &user.DefaultInfo{Name: "alice"})

	denied := repaveRequest("os-2-0-0")
	denied.Spec.ActiveDeadlineSeconds = ptr.To[int64](666)
	_, err := e.repave.Create(ctx, "server-001", denied, nil, &metav1.CreateOptions{FieldManager: "repaver"})
	if status, ok := err.(apierrors.APIStatus); !ok || status.Status().Code != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), "Job") {
		t.Fatalf("a Job the policy refuses: %v, want its 422", err)
	}
	if n := e.jobCount(t); n != 0 {
		t.Fatalf("a refused Job was stored (%d)", n)
	}

	policy.seen = nil
	obj, err := e.repave.Create(ctx, "server-001", repaveRequest("os-2-0-0"), nil, &metav1.CreateOptions{FieldManager: "repaver", DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if len(policy.seen) != 2 {
		t.Fatalf("admission ran %d times, want mutating then validating", len(policy.seen))
	}
	if j, _ := policy.seen[1].GetObject().(*stargate.Job); j == nil || j.Labels["policy.example.com/admitted"] != "true" {
		t.Errorf("validating admission saw %+v, want the mutated dry-run Job", policy.seen[1].GetObject())
	}
	for _, a := range policy.seen {
		opts, _ := a.GetOperationOptions().(*metav1.CreateOptions)
		if a.GetOperation() != admission.Create || a.GetResource().String() != "stargate.io/v1alpha1, Resource=jobs" ||
			a.GetSubresource() != "" || a.GetKind().String() != "stargate.io/v1alpha1, Kind=Job" || a.GetNamespace() != "test" ||
			a.GetUserInfo().GetName() != "alice" || !a.IsDryRun() || opts == nil || opts.FieldManager != "repaver" {
			t.Errorf("admission attributes: %s %v %q %v ns=%q user=%q dryRun=%v options=%+v", a.GetOperation(), a.GetResource(),
				a.GetSubresource(), a.GetKind(), a.GetNamespace(), a.GetUserInfo().GetName(), a.IsDryRun(), opts)
		}
	}
	if name := policy.seen[1].GetName(); !strings.HasPrefix(name, "server-001-repave-") || name != obj.(*stargate.RepaveRequest).Status.Job.Name {
		t.Errorf("validating admission saw name %q, want the generated one, answered in status.job: %+v", name, obj)
	}

	obj, err = e.repave.Create(ctx, "server-001", repaveRequest("os-2-0-0"), nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := e.jobs.Job.Get(e.ctx, obj.(*stargate.RepaveRequest).Status.Job.Name, &metav1.GetOptions{})
	if err != nil || stored.(*stargate.Job).Labels["policy.example.com/admitted"] != "true" {
		t.Errorf("the stored Job was not mutated: %v %+v", err, stored)
	}
}
