package jobs

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/apis/stargate/validation"
	clientfake "stargate.io/stargate/pkg/generated/clientset/versioned/fake"
	"stargate.io/stargate/pkg/registry/stargate/joblock"
)

var (
	jobsResource      = v1alpha1.SchemeGroupVersion.WithResource("jobs")
	hardwaresResource = v1alpha1.SchemeGroupVersion.WithResource("hardwares")
)

// apiServer makes a fake clientset keep, for Jobs and Hardware, the rules of
// Stargate's API server that the controller relies on: resourceVersion
// preconditions on every write, the Hardware lock (status.activeJob, taken
// when a Job is created, released when it finishes or goes), the
// cancel-at-datacenter finalizer following status.submission and the end of
// the Job, deletion that waits for finalizers, and the Job status validation.
// The fake alone keeps none of them.
type apiServer struct {
	client *clientfake.Clientset
	mu     sync.Mutex
	rv     int
}

// serveLikeStargate installs the rules on client, whose tracker already holds
// the initial objects; unfinished Jobs among them hold their Hardware.
func serveLikeStargate(client *clientfake.Clientset, objs []runtime.Object) *apiServer {
	s := &apiServer{client: client}
	for _, obj := range objs { // stored objects have a resourceVersion
		switch o := obj.(type) {
		case *v1alpha1.Job:
			_ = s.store(jobsResource, o.DeepCopy())
		case *v1alpha1.Hardware:
			_ = s.store(hardwaresResource, o.DeepCopy())
		}
	}
	for _, obj := range objs {
		if job, ok := obj.(*v1alpha1.Job); ok && !isFinished(job.Status.Phase) {
			if hw, err := s.hardware(job.Namespace, job.Spec.HardwareRef.Name); err == nil {
				hw.Status.ActiveJob = job.Name
				_ = s.store(hardwaresResource, hw)
			}
		}
	}
	client.PrependReactor("create", "jobs", s.locked(s.createJob))
	client.PrependReactor("update", "jobs", s.locked(s.updateJob))
	client.PrependReactor("delete", "jobs", s.locked(s.deleteJob))
	client.PrependReactor("update", "hardwares", s.locked(s.updateHardware))
	return s
}

func (s *apiServer) locked(f clienttesting.ReactionFunc) clienttesting.ReactionFunc {
	return func(action clienttesting.Action) (bool, runtime.Object, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return f(action)
	}
}

// store writes obj with the next resourceVersion.
func (s *apiServer) store(gvr interface{ String() string }, obj runtime.Object) error {
	s.rv++
	switch o := obj.(type) {
	case *v1alpha1.Job:
		o.ResourceVersion = strconv.Itoa(s.rv)
		return s.client.Tracker().Update(jobsResource, o, o.Namespace)
	case *v1alpha1.Hardware:
		o.ResourceVersion = strconv.Itoa(s.rv)
		return s.client.Tracker().Update(hardwaresResource, o, o.Namespace)
	}
	return fmt.Errorf("cannot store %T", obj)
}

func (s *apiServer) job(ns, name string) (*v1alpha1.Job, error) {
	obj, err := s.client.Tracker().Get(jobsResource, ns, name)
	if err != nil {
		return nil, err
	}
	return obj.(*v1alpha1.Job).DeepCopy(), nil
}

func (s *apiServer) hardware(ns, name string) (*v1alpha1.Hardware, error) {
	obj, err := s.client.Tracker().Get(hardwaresResource, ns, name)
	if err != nil {
		return nil, err
	}
	return obj.(*v1alpha1.Hardware).DeepCopy(), nil
}

func conflict(resource, name string, stale, stored string) error {
	return apierrors.NewConflict(stargate.Resource(resource), name,
		fmt.Errorf("resourceVersion %s is stale (stored: %s)", stale, stored))
}

func (s *apiServer) createJob(action clienttesting.Action) (bool, runtime.Object, error) {
	job := action.(clienttesting.CreateAction).GetObject().(*v1alpha1.Job).DeepCopy()
	if _, err := s.job(job.Namespace, job.Name); err == nil {
		return true, nil, apierrors.NewAlreadyExists(stargate.Resource("jobs"), job.Name)
	}
	hw, err := s.hardware(job.Namespace, job.Spec.HardwareRef.Name)
	if err != nil {
		return true, nil, apierrors.NewInvalid(stargate.Kind("Job"), job.Name, nil)
	}
	if holder := hw.Status.ActiveJob; holder != "" && holder != job.Name {
		if live, err := s.job(job.Namespace, holder); err == nil && !isFinished(live.Status.Phase) {
			return true, nil, apierrors.NewConflict(stargate.Resource("hardwares"), hw.Name, fmt.Errorf("Job %s holds it", holder))
		}
	}
	hw.Status.ActiveJob = job.Name
	if err := s.store(hardwaresResource, hw); err != nil {
		return true, nil, err
	}
	if job.UID == "" {
		job.UID = types.UID("uid-" + job.Name)
	}
	job.Status = v1alpha1.JobStatus{Phase: v1alpha1.JobPending}
	s.rv++
	job.ResourceVersion = strconv.Itoa(s.rv)
	if err := s.client.Tracker().Create(jobsResource, job, job.Namespace); err != nil {
		return true, nil, err
	}
	return true, job.DeepCopy(), nil
}

func (s *apiServer) updateJob(action clienttesting.Action) (bool, runtime.Object, error) {
	update := action.(clienttesting.UpdateAction)
	in := update.GetObject().(*v1alpha1.Job)
	stored, err := s.job(in.Namespace, in.Name)
	if err != nil {
		return true, nil, err
	}
	if in.ResourceVersion != "" && in.ResourceVersion != stored.ResourceVersion {
		return true, nil, conflict("jobs", in.Name, in.ResourceVersion, stored.ResourceVersion)
	}
	updated := stored.DeepCopy()
	if update.GetSubresource() == "status" {
		updated.Status = *in.Status.DeepCopy()
		var oldInternal, newInternal stargate.Job
		if err := v1alpha1.Convert_v1alpha1_Job_To_stargate_Job(stored, &oldInternal, nil); err != nil {
			return true, nil, err
		}
		if err := v1alpha1.Convert_v1alpha1_Job_To_stargate_Job(updated, &newInternal, nil); err != nil {
			return true, nil, err
		}
		if errs := validation.ValidateJobStatusUpdate(&newInternal, &oldInternal); len(errs) > 0 {
			return true, nil, apierrors.NewInvalid(stargate.Kind("Job"), in.Name, errs)
		}
		switch {
		case isFinished(updated.Status.Phase):
			updated.Finalizers = slices.DeleteFunc(updated.Finalizers, func(f string) bool { return f == v1alpha1.JobCancelFinalizer })
		case updated.Status.Submission != nil && updated.DeletionTimestamp == nil && !slices.Contains(updated.Finalizers, v1alpha1.JobCancelFinalizer):
			updated.Finalizers = append(updated.Finalizers, v1alpha1.JobCancelFinalizer)
		case updated.Status.Submission == nil && stored.Status.Submission != nil && updated.Status.DCJobID == "":
			updated.Finalizers = slices.DeleteFunc(updated.Finalizers, func(f string) bool { return f == v1alpha1.JobCancelFinalizer })
		}
	} else {
		updated.Spec.Cancel = stored.Spec.Cancel || in.Spec.Cancel
		updated.Labels, updated.Annotations = in.Labels, in.Annotations
	}
	if updated.DeletionTimestamp != nil && len(updated.Finalizers) == 0 {
		return true, updated, s.remove(updated)
	}
	if err := s.store(jobsResource, updated); err != nil {
		return true, nil, err
	}
	switch {
	case isFinished(updated.Status.Phase):
		s.release(updated)
	case updated.Status.Phase == v1alpha1.JobRunning:
		s.follow(updated, false)
	}
	return true, updated.DeepCopy(), nil
}

func (s *apiServer) deleteJob(action clienttesting.Action) (bool, runtime.Object, error) {
	del := action.(clienttesting.DeleteAction)
	stored, err := s.job(del.GetNamespace(), del.GetName())
	if err != nil {
		return true, nil, err
	}
	if p := del.GetDeleteOptions().Preconditions; p != nil {
		if p.UID != nil && *p.UID != stored.UID || p.ResourceVersion != nil && *p.ResourceVersion != stored.ResourceVersion {
			return true, nil, conflict("jobs", stored.Name, "(precondition)", stored.ResourceVersion)
		}
	}
	if len(stored.Finalizers) > 0 {
		if stored.DeletionTimestamp == nil {
			now := metav1.Now()
			stored.DeletionTimestamp = &now
			return true, nil, s.store(jobsResource, stored)
		}
		return true, nil, nil
	}
	return true, nil, s.remove(stored)
}

func (s *apiServer) remove(job *v1alpha1.Job) error {
	if err := s.client.Tracker().Delete(jobsResource, job.Namespace, job.Name); err != nil {
		return err
	}
	s.release(job)
	return nil
}

// release frees the Hardware job holds, with the Job's result when it
// finished, as the server's hooks do.
func (s *apiServer) release(job *v1alpha1.Job) {
	s.follow(job, true)
}

// follow applies, as the server's hooks do, what job says about the Hardware
// it holds (joblock.FollowJob) and, if release, frees it.
func (s *apiServer) follow(job *v1alpha1.Job, release bool) {
	hw, err := s.hardware(job.Namespace, job.Spec.HardwareRef.Name)
	if err != nil || hw.Status.ActiveJob != job.Name {
		return
	}
	var internalJob stargate.Job
	var status stargate.HardwareStatus
	if v1alpha1.Convert_v1alpha1_Job_To_stargate_Job(job, &internalJob, nil) != nil ||
		v1alpha1.Convert_v1alpha1_HardwareStatus_To_stargate_HardwareStatus(&hw.Status, &status, nil) != nil {
		panic("conversion")
	}
	if !release || isFinished(job.Status.Phase) { // a deleted unfinished Job leaves no result
		joblock.FollowJob(&internalJob, &status, time.Now())
	}
	if v1alpha1.Convert_stargate_HardwareStatus_To_v1alpha1_HardwareStatus(&status, &hw.Status, nil) != nil {
		panic("conversion")
	}
	if release {
		hw.Status.ActiveJob = ""
		if isFinished(job.Status.Phase) {
			hw.Status.LastJob = job.Name
		}
	}
	_ = s.store(hardwaresResource, hw)
}

func (s *apiServer) updateHardware(action clienttesting.Action) (bool, runtime.Object, error) {
	update := action.(clienttesting.UpdateAction)
	in := update.GetObject().(*v1alpha1.Hardware)
	stored, err := s.hardware(in.Namespace, in.Name)
	if err != nil {
		return true, nil, err
	}
	if in.ResourceVersion != "" && in.ResourceVersion != stored.ResourceVersion {
		return true, nil, conflict("hardwares", in.Name, in.ResourceVersion, stored.ResourceVersion)
	}
	updated := stored.DeepCopy()
	if update.GetSubresource() == "status" {
		lock := stored.Status.ActiveJob // the lock is the server's, not the writer's
		updated.Status = *in.Status.DeepCopy()
		updated.Status.ActiveJob = lock
	} else {
		updated.Spec = in.Spec
	}
	if err := s.store(hardwaresResource, updated); err != nil {
		return true, nil, err
	}
	return true, updated.DeepCopy(), nil
}
