package controller

import (
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// byPhase indexes Jobs by "<namespace>/<phase>", and the Jobs that occupy a
// slot of their datacenter also by "<namespace>/occupying", so counting a
// datacenter's busy slots or its waiting Jobs does not walk all its Jobs.
const byPhase = "stargate.io/namespace-phase"

const occupying = "occupying"

// byDCJobID indexes the Jobs that know their datacenter job by
// "<namespace>/<status.dcJobID>", so a datacenter's changes feed finds the
// Job each datacenter job belongs to.
const byDCJobID = "stargate.io/namespace-dcjobid"

func phaseKey(namespace string, phase v1alpha1.JobPhase) string {
	return namespace + "/" + string(phase)
}

// Occupies reports whether job holds a slot of its datacenter (see
// v1alpha1.Job.Occupies): such a Job holds the slot until it finishes,
// whatever its submits answered, since an answer can be lost.
func Occupies(job *v1alpha1.Job) bool { return job.Occupies() }

// AddJobIndexers adds the indexes RunningJobs needs to a Job informer; call
// it before the informer starts.
func AddJobIndexers(informer cache.SharedIndexInformer) error {
	return informer.AddIndexers(cache.Indexers{
		byPhase: func(obj interface{}) ([]string, error) {
			job, ok := obj.(*v1alpha1.Job)
			if !ok {
				return nil, fmt.Errorf("not a Job: %T", obj)
			}
			keys := []string{phaseKey(job.Namespace, job.Status.Phase)}
			if Occupies(job) {
				keys = append(keys, phaseKey(job.Namespace, occupying))
			}
			return keys, nil
		},
		byDCJobID: func(obj interface{}) ([]string, error) {
			job, ok := obj.(*v1alpha1.Job)
			if !ok {
				return nil, fmt.Errorf("not a Job: %T", obj)
			}
			if job.Status.DCJobID == "" {
				return nil, nil
			}
			return []string{job.Namespace + "/" + job.Status.DCJobID}, nil
		},
	})
}

// RunningJobs counts the Jobs running in each datacenter (namespace): those
// the cache shows occupying a slot plus those this process is starting and
// the cache has not caught up with. Reserve is how a controller that is about to
// start a Job makes sure two workers never both take the last free slot.
type RunningJobs struct {
	indexer cache.Indexer

	mu sync.Mutex
	// started holds the Jobs reserved per namespace: started (or about to be)
	// here, maybe not yet Running in the cache.
	started map[string]map[types.UID]string
}

// NewRunningJobs counts over a Job informer that has AddJobIndexers' indexes.
func NewRunningJobs(informer cache.SharedIndexInformer) *RunningJobs {
	return &RunningJobs{indexer: informer.GetIndexer(), started: map[string]map[types.UID]string{}}
}

// Count returns the Jobs of namespace that occupy a slot.
func (r *RunningJobs) Count(namespace string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.countLocked(namespace)
}

func (r *RunningJobs) countLocked(namespace string) int {
	running, _ := r.indexer.ByIndex(byPhase, phaseKey(namespace, occupying))
	n := len(running)
	for uid, name := range r.started[namespace] {
		obj, exists, _ := r.indexer.GetByKey(namespace + "/" + name)
		job, ok := obj.(*v1alpha1.Job)
		switch {
		case !exists || !ok || job.UID != uid:
			delete(r.started[namespace], uid) // gone
		case !Occupies(job) && (job.Status.Phase == v1alpha1.JobPending || job.Status.Phase == ""):
			n++ // being started here, not yet occupying in the cache
		default:
			delete(r.started[namespace], uid) // the cache has caught up
		}
	}
	return n
}

// Reserve takes one of namespace's max slots for job, and says whether there
// was one. A Job that already holds a slot (it occupies one, or is reserved)
// gets true without taking another.
func (r *RunningJobs) Reserve(job *v1alpha1.Job, max int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, held := r.started[job.Namespace][job.UID]; held || Occupies(job) {
		return true
	}
	if r.countLocked(job.Namespace) >= max {
		return false
	}
	if r.started[job.Namespace] == nil {
		r.started[job.Namespace] = map[types.UID]string{}
	}
	r.started[job.Namespace][job.UID] = job.Name
	return true
}

// Release gives back a slot Reserve took, when nothing was sent for the Job.
func (r *RunningJobs) Release(job *v1alpha1.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.started[job.Namespace], job.UID)
}

// Waiting returns the Pending Jobs of namespace, from the cache.
func (r *RunningJobs) Waiting(namespace string) []*v1alpha1.Job {
	return r.byIndex(byPhase, phaseKey(namespace, v1alpha1.JobPending))
}

// Running returns the Running Jobs of namespace, from the cache.
func (r *RunningJobs) Running(namespace string) []*v1alpha1.Job {
	return r.byIndex(byPhase, phaseKey(namespace, v1alpha1.JobRunning))
}

// CountRunning is how many Jobs of namespace the cache shows Running.
func (r *RunningJobs) CountRunning(namespace string) int {
	keys, _ := r.indexer.IndexKeys(byPhase, phaseKey(namespace, v1alpha1.JobRunning))
	return len(keys)
}

// ByDCJobID returns the Jobs of namespace whose status.dcJobID is id, from
// the cache: one, unless a datacenter gave one ID to two jobs.
func (r *RunningJobs) ByDCJobID(namespace, id string) []*v1alpha1.Job {
	return r.byIndex(byDCJobID, namespace+"/"+id)
}

func (r *RunningJobs) byIndex(index, key string) []*v1alpha1.Job {
	objs, _ := r.indexer.ByIndex(index, key)
	jobs := make([]*v1alpha1.Job, 0, len(objs))
	for _, obj := range objs {
		if job, ok := obj.(*v1alpha1.Job); ok {
			jobs = append(jobs, job)
		}
	}
	return jobs
}
