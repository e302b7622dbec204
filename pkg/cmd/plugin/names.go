package plugin

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// campaignTypes are the ways to write a Campaign's type in TYPE/NAME, as
// kubectl accepts them (singular, plural, short name, with or without group).
var campaignTypes = map[string]bool{
	"campaign": true, "campaigns": true, "camp": true,
	"campaign.stargate.io": true, "campaigns.stargate.io": true,
	"campaign.v1alpha1.stargate.io": true, "campaigns.v1alpha1.stargate.io": true,
}

// campaignName returns the Campaign named by arg: campaign/NAME,
// campaigns/NAME, camp/NAME (optionally group-qualified) or a bare NAME.
func campaignName(arg string) (string, error) {
	name := arg
	if typ, rest, ok := strings.Cut(arg, "/"); ok {
		if !campaignTypes[strings.ToLower(typ)] {
			return "", fmt.Errorf("%q is not a Campaign: write campaign/NAME or NAME", arg)
		}
		name = rest
	}
	if name == "" {
		return "", fmt.Errorf("%q names no Campaign: write campaign/NAME or NAME", arg)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("%q is not a valid Campaign name: %s", name, strings.Join(errs, "; "))
	}
	return name, nil
}
