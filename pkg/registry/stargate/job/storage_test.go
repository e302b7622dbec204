package job

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistrytest "k8s.io/apiserver/pkg/registry/generic/testing"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

func validJob() *stargate.Job {
	return &stargate.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "repave-server-001", Namespace: "test"},
		Spec: stargate.JobSpec{
			HardwareRef:  stargate.LocalObjectReference{Name: "server-001"},
			TemplateRef:  &stargate.LocalObjectReference{Name: "os-2-0-0"},
			Operation:    stargate.OperationRepave,
			BackoffLimit: ptr.To[int32](3),
		},
	}
}

func newStorage(t *testing.T) *Storage {
	scheme := registrytest.Scheme()
	s, err := NewStorage(scheme, registrytest.RESTOptionsGetter(t, scheme))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Job.Store.DestroyFunc)
	return s
}

func TestStrategy(t *testing.T) {
	ctx := context.Background()
	job := validJob()
	job.Status = stargate.JobStatus{Phase: stargate.JobSucceeded, DCJobID: "forged"}
	job.Finalizers = []string{stargate.JobCancelFinalizer, "example.com/mine"}
	Strategy(nil).PrepareForCreate(ctx, job)
	if !slices.Equal(job.Finalizers, []string{"example.com/mine"}) {
		t.Errorf("the cancel finalizer is Stargate's to set: %v", job.Finalizers)
	}
	if job.Status.Phase != stargate.JobPending || job.Status.DCJobID != "" || job.Generation != 1 {
		t.Errorf("after create: status %+v generation %d; want a clean Pending status and generation 1", job.Status, job.Generation)
	}

	job.Status.Phase = stargate.JobRunning
	cancelled := job.DeepCopy()
	cancelled.Spec.Cancel = true
	cancelled.Status = stargate.JobStatus{}
	Strategy(nil).PrepareForUpdate(ctx, cancelled, job)
	if cancelled.Status.Phase != stargate.JobRunning || cancelled.Generation != 2 {
		t.Errorf("cancel: status %+v generation %d; want Running kept and generation 2", cancelled.Status, cancelled.Generation)
	}

	status := job.DeepCopy()
	status.ResourceVersion, job.ResourceVersion = "5", "5"
	status.Spec.HardwareRef.Name = "other"
	status.Status.Phase = stargate.JobSucceeded
	StatusStrategy(nil).PrepareForUpdate(ctx, status, job)
	if status.Spec.HardwareRef.Name != "server-001" || status.Status.Phase != stargate.JobSucceeded {
		t.Errorf("status write: spec %+v status %+v", status.Spec, status.Status)
	}
	if errs := StatusStrategy(nil).ValidateUpdate(ctx, status, job); len(errs) != 0 {
		t.Errorf("unexpected errors %v", errs)
	}

	// Updates neither add nor remove the cancel finalizer; abandoning the Job
	// (its label) lets it go.
	held := job.DeepCopy()
	held.Finalizers = []string{stargate.JobCancelFinalizer}
	dropped := held.DeepCopy()
	dropped.Finalizers = nil
	Strategy(nil).PrepareForUpdate(ctx, dropped, held)
	if !slices.Contains(dropped.Finalizers, stargate.JobCancelFinalizer) {
		t.Errorf("an update removed the cancel finalizer: %v", dropped.Finalizers)
	}
	abandoned := held.DeepCopy()
	abandoned.Finalizers, abandoned.Labels = nil, map[string]string{stargate.JobAbandonLabel: "true"}
	Strategy(nil).PrepareForUpdate(ctx, abandoned, held)
	if slices.Contains(abandoned.Finalizers, stargate.JobCancelFinalizer) {
		t.Errorf("an abandoned Job kept the cancel finalizer: %v", abandoned.Finalizers)
	}
	forged := job.DeepCopy()
	forged.Finalizers = []string{stargate.JobCancelFinalizer}
	Strategy(nil).PrepareForUpdate(ctx, forged, job)
	if slices.Contains(forged.Finalizers, stargate.JobCancelFinalizer) {
		t.Errorf("an update added the cancel finalizer: %v", forged.Finalizers)
	}

	// The write fixing the request puts the cancel finalizer on; the write
	// ending the Job takes it off.
	pending := job.DeepCopy()
	pending.Status = stargate.JobStatus{Phase: stargate.JobPending}
	submitting := pending.DeepCopy()
	submitting.Status.Submission = &stargate.JobSubmission{MAC: "aa:bb:cc:dd:ee:01"}
	StatusStrategy(nil).PrepareForUpdate(ctx, submitting, pending)
	if !slices.Contains(submitting.Finalizers, stargate.JobCancelFinalizer) {
		t.Errorf("fixing status.submission must add the finalizer: %v", submitting.Finalizers)
	}
	ended := submitting.DeepCopy()
	ended.Status.Phase = stargate.JobFailed
	StatusStrategy(nil).PrepareForUpdate(ctx, ended, submitting)
	if slices.Contains(ended.Finalizers, stargate.JobCancelFinalizer) {
		t.Errorf("ending the Job must drop the finalizer: %v", ended.Finalizers)
	}

	fs := SelectableFields(job)
	for _, f := range v1alpha1.SelectableFields("Job") {
		if !fs.Has(f) {
			t.Errorf("field selector %s is accepted by the scheme but not served", f)
		}
	}
}

func TestCreate(t *testing.T) {
	invalid := validJob()
	invalid.Spec.Operation = "explode"
	genericregistrytest.New(t, newStorage(t).Job.Store).TestCreate(validJob(), invalid)
}

func TestUpdate(t *testing.T) {
	genericregistrytest.New(t, newStorage(t).Job.Store).TestUpdate(validJob(),
		func(obj runtime.Object) runtime.Object {
			obj.(*stargate.Job).Spec.Cancel = true
			return obj
		},
		func(obj runtime.Object) runtime.Object {
			obj.(*stargate.Job).Spec.HardwareRef.Name = "server-002"
			return obj
		})
}

func TestDeleteGetListWatch(t *testing.T) {
	store := newStorage(t).Job.Store
	genericregistrytest.New(t, store).ReturnDeletedObject().TestDelete(validJob())
	genericregistrytest.New(t, store).TestGet(validJob())
	genericregistrytest.New(t, store).TestList(validJob())
	genericregistrytest.New(t, store).TestWatch(validJob(),
		[]labels.Set{{}}, []labels.Set{{"stargate.io/hardware": "server-009"}},
		[]fields.Set{{"spec.hardwareRef.name": "server-001"}, {"spec.operation": "repave"}, {"status.phase": "Pending"}},
		[]fields.Set{{"spec.hardwareRef.name": "server-002"}, {"status.phase": "Succeeded"}})
}

// TestFinishedJobStaysFinished drives a Job through its status subresource
// and checks a finished Job cannot be moved back, on real storage.
func TestFinishedJobStaysFinished(t *testing.T) {
	s := newStorage(t)
	ctx := genericapirequest.WithNamespace(context.Background(), "test")
	obj, err := s.Job.Create(ctx, validJob(), nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := obj.(*stargate.Job)
	for _, phase := range []stargate.JobPhase{stargate.JobRunning, stargate.JobSucceeded} {
		job = job.DeepCopy()
		job.Status.Phase = phase
		obj, _, err = s.Status.Update(ctx, job.Name, rest.DefaultUpdatedObjectInfo(job), nil, nil, false, &metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("to %s: %v", phase, err)
		}
		job = obj.(*stargate.Job)
	}
	job = job.DeepCopy()
	job.Status.Phase = stargate.JobRunning
	_, _, err = s.Status.Update(ctx, job.Name, rest.DefaultUpdatedObjectInfo(job), nil, nil, false, &metav1.UpdateOptions{})
	if err == nil || !strings.Contains(err.Error(), "status.phase") {
		t.Fatalf("a Succeeded Job went back to Running: err=%v", err)
	}
}

func TestTableColumns(t *testing.T) {
	job := validJob()
	job.Status = stargate.JobStatus{Phase: stargate.JobSucceeded, DCJobID: "job-1234567890",
		StartTime: &metav1.Time{Time: time.Now().Add(-32 * time.Second)}, CompletionTime: &metav1.Time{Time: time.Now()}}
	table, err := tableConvertor.ConvertToTable(context.Background(), job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := registrytest.ColumnNames(table); got != "Name,Hardware,Operation,Phase,Age,DC-Job,Template,Duration" {
		t.Errorf("columns %s", got)
	}
	cells := table.Rows[0].Cells
	if cells[1] != "server-001" || cells[2] != "repave" || cells[3] != "Succeeded" || cells[5] != "job-1234567890" ||
		cells[6] != "os-2-0-0" || cells[7] != "32s" {
		t.Errorf("row %v", cells)
	}
}
