package campaign

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate"
	registry "stargate.io/stargate/pkg/registry/stargate"
)

// tableConvertor prints NAME OPERATION TARGETS DONE FAILED WAVE PHASE AGE
// and, with -o wide, the Template, the running and skipped members.
var tableConvertor = registry.TableConvertor[*stargate.Campaign]{Columns: []registry.Column[*stargate.Campaign]{
	registry.NameColumn[*stargate.Campaign](),
	registry.StringColumn("Operation", "repave, reboot, power-off or power-on.", 0,
		func(c *stargate.Campaign) string { return string(c.Spec.Operation) }),
	countColumn("Targets", "The members: the Hardware selected when the Campaign started.", 0,
		func(n *stargate.CampaignCounts) int32 { return n.Targets }),
	countColumn("Done", "Members that need nothing more: succeeded, failed, cancelled or skipped.", 0, done),
	countColumn("Failed", "Members whose Job failed.", 0,
		func(n *stargate.CampaignCounts) int32 { return n.Failed }),
	registry.StringColumn("Wave", "The wave under way, of how many; - before the start.", 0, wave),
	registry.StringColumn("Phase", "Pending, Running, Paused, Complete, Failed or Cancelled.", 0,
		func(c *stargate.Campaign) string { return string(phase(c)) }),
	registry.AgeColumn[*stargate.Campaign](0),
	registry.StringColumn("Template", "The Template a repave installs.", 1,
		func(c *stargate.Campaign) string {
			if c.Spec.TemplateRef == nil {
				return ""
			}
			return c.Spec.TemplateRef.Name
		}),
	countColumn("Running", "Members with a Job running.", 1,
		func(n *stargate.CampaignCounts) int32 { return n.Running }),
	countColumn("Skipped", "Members already up to date.", 1,
		func(n *stargate.CampaignCounts) int32 { return n.Skipped }),
}}

func countColumn(name, description string, priority int32, count func(*stargate.CampaignCounts) int32) registry.Column[*stargate.Campaign] {
	return registry.Column[*stargate.Campaign]{
		Definition: metav1.TableColumnDefinition{Name: name, Type: "integer", Priority: priority, Description: description},
		Cell:       func(c *stargate.Campaign) interface{} { return int64(count(&c.Status.Counts)) },
	}
}

// done counts the members that need nothing more.
func done(n *stargate.CampaignCounts) int32 {
	return n.Succeeded + n.Failed + n.Cancelled + n.Skipped
}

// wave prints currentWave/waves once the Campaign started, - before.
func wave(c *stargate.Campaign) string {
	if c.Status.StartTime == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d", c.Status.CurrentWave, max(c.Status.Waves, int32(len(c.Status.Plan))))
}
