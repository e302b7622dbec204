package plugin

import (
	"strings"
	"testing"

	clienttesting "k8s.io/client-go/testing"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

func TestControl(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*v1alpha1.Campaign)
		args  []string
		patch string // "" for none
		out   string
		err   string
	}{
		{name: "pause", args: []string{"pause", "campaign/os-2"},
			patch: `{"spec":{"paused":true}}`, out: "campaign.stargate.io/os-2 paused\n"},
		{name: "pause paused", edit: func(c *v1alpha1.Campaign) { c.Spec.Paused = true }, args: []string{"pause", "os-2"},
			out: "campaign.stargate.io/os-2 already paused\n"},
		{name: "pause ended", edit: withPhase(v1alpha1.CampaignComplete), args: []string{"pause", "os-2"},
			err: `campaign "os-2" has ended (Complete): there is nothing to pause`},
		{name: "resume", edit: func(c *v1alpha1.Campaign) { c.Spec.Paused = true }, args: []string{"resume", "camp/os-2"},
			patch: `{"spec":{"paused":false}}`, out: "campaign.stargate.io/os-2 resumed\n"},
		{name: "resume not paused", args: []string{"resume", "os-2"}, out: "campaign.stargate.io/os-2 was not paused\n"},
		{name: "resume awaiting approval", args: []string{"resume", "os-2"},
			edit: func(c *v1alpha1.Campaign) {
				c.Spec.Paused = true
				condition(c, v1alpha1.CampaignConditionPaused, v1alpha1.CampaignReasonAwaitingApproval, "")
			},
			patch: `{"spec":{"paused":false}}`,
			out:   "campaign.stargate.io/os-2 resumed\ncampaign \"os-2\" also awaits approval of its next wave: kubectl stargate approve campaign/os-2\n"},
		{name: "cancel", args: []string{"cancel", "campaigns/os-2"},
			patch: `{"spec":{"cancel":true}}`, out: "campaign.stargate.io/os-2 cancelled\n"},
		{name: "cancel cancelled", edit: func(c *v1alpha1.Campaign) { c.Spec.Cancel = true }, args: []string{"cancel", "os-2"},
			out: "campaign.stargate.io/os-2 already cancelled\n"},
		{name: "cancel ended", edit: withPhase(v1alpha1.CampaignFailed), args: []string{"cancel", "os-2"},
			out: "campaign.stargate.io/os-2 has already ended (Failed)\n"},
		{name: "approve the current wave", args: []string{"approve", "os-2"},
			patch: `{"spec":{"approvedWaves":2}}`, out: "campaign.stargate.io/os-2 approved through wave 2\n"},
		{name: "approve the held wave",
			edit: func(c *v1alpha1.Campaign) {
				c.Spec.ApprovedWaves, c.Status.CurrentWave = 2, 3 // the controller holds wave 3 as the current one
				condition(c, v1alpha1.CampaignConditionPaused, v1alpha1.CampaignReasonAwaitingApproval, "wave 3 waits for approval")
			},
			args: []string{"approve", "os-2"}, patch: `{"spec":{"approvedWaves":3}}`, out: "campaign.stargate.io/os-2 approved through wave 3\n"},
		{name: "approve twice before the controller read the first",
			edit: func(c *v1alpha1.Campaign) {
				c.Spec.ApprovedWaves, c.Status.CurrentWave, c.Generation = 3, 3, 2 // status still shows wave 3 held
				condition(c, v1alpha1.CampaignConditionPaused, v1alpha1.CampaignReasonAwaitingApproval, "wave 3 waits for approval")
			},
			args: []string{"approve", "os-2"}, out: "campaign.stargate.io/os-2 approved through wave 3; waiting for the controller to start it\n"},
		{name: "approve a datacenter's held wave",
			edit: func(c *v1alpha1.Campaign) {
				c.Spec.ApprovedWaves, c.Status.CurrentWave = 2, 3
				c.Status.Datacenters[1].PausedReason = v1alpha1.CampaignReasonAwaitingApproval
			},
			args: []string{"approve", "os-2"}, patch: `{"spec":{"approvedWaves":3}}`, out: "campaign.stargate.io/os-2 approved through wave 3\n"},
		{name: "approve, nothing held", edit: func(c *v1alpha1.Campaign) { c.Spec.ApprovedWaves = 2 }, args: []string{"approve", "os-2"},
			out: "campaign.stargate.io/os-2 already approved through wave 2\n"},
		{name: "approve before the start, nothing held", args: []string{"approve", "os-2"},
			edit: func(c *v1alpha1.Campaign) { c.Status = v1alpha1.CampaignStatus{} },
			out:  "campaign.stargate.io/os-2 has no wave awaiting approval (--wave N approves ahead)\n"},
		{name: "approve the first wave, held before the start", args: []string{"approve", "os-2"},
			edit: func(c *v1alpha1.Campaign) {
				c.Status = v1alpha1.CampaignStatus{Phase: v1alpha1.CampaignPaused}
				condition(c, v1alpha1.CampaignConditionPaused, v1alpha1.CampaignReasonAwaitingApproval, "wave 1 awaits approval")
			},
			patch: `{"spec":{"approvedWaves":1}}`, out: "campaign.stargate.io/os-2 approved through wave 1\n"},
		{name: "approve --wave", args: []string{"approve", "os-2", "--wave", "3"},
			patch: `{"spec":{"approvedWaves":3}}`, out: "campaign.stargate.io/os-2 approved through wave 3\n"},
		{name: "approve --wave below", edit: func(c *v1alpha1.Campaign) { c.Spec.ApprovedWaves = 3 }, args: []string{"approve", "os-2", "--wave", "1"},
			out: "campaign.stargate.io/os-2 already approved through wave 3\n"},
		{name: "approve --wave past the plan", args: []string{"approve", "os-2", "--wave", "4"},
			err: `campaign "os-2" has 3 waves: there is no wave 4`},
		{name: "approve ended", edit: withPhase(v1alpha1.CampaignCancelled), args: []string{"approve", "os-2"},
			err: "has ended (Cancelled): there is nothing to approve"},
		{name: "not a campaign", args: []string{"pause", "job/os-2"}, err: "is not a Campaign"},
		{name: "not found", args: []string{"cancel", "os-3"}, err: `campaigns.stargate.io "os-3" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := campaign("os-2")
			if tc.edit != nil {
				tc.edit(c)
			}
			h := newHarness(t, false, c)
			err := h.run(tc.args...)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with\n%s", err, tc.err)
			}
			if got := h.out.String(); got != tc.out {
				t.Errorf("printed %q, want %q", got, tc.out)
			}
			patches := h.actions("patch", "campaigns")
			switch {
			case tc.patch == "" && len(patches) > 0:
				t.Errorf("sent %s, want no patch", patches[0].(clienttesting.PatchAction).GetPatch())
			case tc.patch != "" && len(patches) != 1:
				t.Errorf("sent %d patches, want %s", len(patches), tc.patch)
			case tc.patch != "":
				p := patches[0].(clienttesting.PatchAction)
				if got := string(p.GetPatch()); got != tc.patch || p.GetPatchType() != "application/merge-patch+json" {
					t.Errorf("sent %s %s, want %s", p.GetPatchType(), got, tc.patch)
				}
			}
		})
	}
}
