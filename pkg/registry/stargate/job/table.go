package job

import (
	"time"

	"k8s.io/apimachinery/pkg/util/duration"

	"stargate.io/stargate/pkg/apis/stargate"
	registry "stargate.io/stargate/pkg/registry/stargate"
)

// tableConvertor prints the seed's columns (NAME, HARDWARE, OPERATION, PHASE,
// AGE) and, with -o wide, the datacenter's job ID, template and duration.
var tableConvertor = registry.TableConvertor[*stargate.Job]{Columns: []registry.Column[*stargate.Job]{
	registry.NameColumn[*stargate.Job](),
	registry.StringColumn("Hardware", "The Hardware operated on.", 0,
		func(j *stargate.Job) string { return j.Spec.HardwareRef.Name }),
	registry.StringColumn("Operation", "repave, reboot, power-off or power-on.", 0,
		func(j *stargate.Job) string { return string(j.Spec.Operation) }),
	registry.StringColumn("Phase", "Pending, Running, Succeeded or Failed.", 0,
		func(j *stargate.Job) string { return string(j.Status.Phase) }),
	registry.AgeColumn[*stargate.Job](0),
	registry.StringColumn("DC-Job", "The datacenter's ID for the operation.", 1,
		func(j *stargate.Job) string { return j.Status.DCJobID }),
	registry.StringColumn("Template", "The Template installed by a repave.", 1,
		func(j *stargate.Job) string {
			if j.Spec.TemplateRef == nil {
				return ""
			}
			return j.Spec.TemplateRef.Name
		}),
	registry.StringColumn("Duration", "How long the Job ran, or has run so far.", 1, jobDuration),
}}

func jobDuration(j *stargate.Job) string {
	if j.Status.StartTime == nil {
		return ""
	}
	end := time.Now()
	if j.Status.CompletionTime != nil {
		end = j.Status.CompletionTime.Time
	}
	return duration.HumanDuration(end.Sub(j.Status.StartTime.Time))
}
