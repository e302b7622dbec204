package plugin

import (
	"strings"
	"testing"
)

func TestCampaignName(t *testing.T) {
	for _, tc := range []struct {
		arg, want, err string
	}{
		{arg: "os-2", want: "os-2"},
		{arg: "campaign/os-2", want: "os-2"},
		{arg: "campaigns/os-2", want: "os-2"},
		{arg: "camp/os-2", want: "os-2"},
		{arg: "Campaign/os-2", want: "os-2"},
		{arg: "campaign.stargate.io/os-2", want: "os-2"},
		{arg: "campaigns.v1alpha1.stargate.io/os-2", want: "os-2"},
		{arg: "job/os-2", err: `"job/os-2" is not a Campaign`},
		{arg: "deployment.apps/os-2", err: "is not a Campaign"},
		{arg: "campaign/", err: "names no Campaign"},
		{arg: "", err: "names no Campaign"},
		{arg: "campaign/OS_2", err: "not a valid Campaign name"},
		{arg: "campaign/a/b", err: "not a valid Campaign name"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			got, err := campaignName(tc.arg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("campaignName(%q) = %q, %v; want an error with %q", tc.arg, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("campaignName(%q) = %q, %v; want %q", tc.arg, got, err, tc.want)
			}
		})
	}
}
