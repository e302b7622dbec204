package controller

import (
	"k8s.io/apimachinery/pkg/labels"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	listers "stargate.io/stargate/pkg/generated/listers/stargate/v1alpha1"
)

// RunningJobs counts the Running Jobs of a datacenter (namespace) in the cache.
func RunningJobs(jobs listers.JobLister, namespace string) int {
	list, err := jobs.Jobs(namespace).List(labels.Everything())
	if err != nil {
		return 0
	}
	n := 0
	for _, j := range list {
		if j.Status.Phase == v1alpha1.JobRunning {
			n++
		}
	}
	return n
}
