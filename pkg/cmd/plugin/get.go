package plugin

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/pkg/generated/clientset/versioned/scheme"
)

func newGetCommand(env *environment) *cobra.Command {
	printFlags := genericclioptions.NewPrintFlags("").WithTypeSetter(scheme.Scheme)
	cmd := &cobra.Command{
		Use:   "get campaign/NAME...",
		Short: "Show a Campaign as a tree: datacenter, wave, failed servers",
		Long: `Show a Campaign as a tree: each datacenter with its counts and why it is
paused, under it the waves it has members in, under each wave its failed
servers with their Job and reason (status lists the first 50 failures).
-o json|yaml prints the Campaign itself.`,
		Example: `  kubectl stargate get campaign/os-2
  kubectl stargate get os-2 -o yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p printers.ResourcePrinter
			if *printFlags.OutputFormat != "" {
				var err error
				if p, err = printFlags.ToPrinter(); err != nil {
					return err
				}
			}
			names := make([]string, len(args))
			for i, a := range args {
				var err error
				if names[i], err = campaignName(a); err != nil {
					return err
				}
			}
			client, err := env.client()
			if err != nil {
				return err
			}
			return getCampaigns(cmd.Context(), client, names, p, env.streams.Out)
		},
	}
	printFlags.AddFlags(cmd)
	return cmd
}

func getCampaigns(ctx context.Context, client versioned.Interface, names []string, p printers.ResourcePrinter, out io.Writer) error {
	for i, name := range names {
		c, err := client.StargateV1alpha1().Campaigns().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p != nil {
			if err := p.PrintObj(c, out); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		printTree(out, campaignTree(c))
	}
	return nil
}

// node is one line of a tree and the lines under it.
type node struct {
	text     string
	children []*node
}

func (n *node) add(text string) *node {
	child := &node{text: text}
	n.children = append(n.children, child)
	return child
}

// printTree prints root, then its descendants with box-drawing branches.
func printTree(w io.Writer, root *node) {
	fmt.Fprintln(w, root.text)
	printChildren(w, root, "")
}

func printChildren(w io.Writer, n *node, indent string) {
	for i, child := range n.children {
		branch, next := "├── ", "│   "
		if i == len(n.children)-1 {
			branch, next = "└── ", "    "
		}
		fmt.Fprintln(w, indent+branch+child.text)
		printChildren(w, child, indent+next)
	}
}

// campaignTree arranges the Campaign's status as datacenter -> wave ->
// failed servers.
func campaignTree(c *v1alpha1.Campaign) *node {
	root := &node{text: campaignHeader(c)}
	dcs := map[string]*v1alpha1.CampaignDatacenterStatus{}
	var names []string
	for i := range c.Status.Datacenters {
		dc := &c.Status.Datacenters[i]
		dcs[dc.Name] = dc
		names = append(names, dc.Name)
	}
	// Datacenters the plan or the failures name but status does not count yet.
	for _, w := range c.Status.Plan {
		for _, d := range w.Datacenters {
			if !slices.Contains(names, d.Name) {
				names = append(names, d.Name)
			}
		}
	}
	for _, f := range c.Status.Failures {
		if !slices.Contains(names, f.Datacenter) {
			names = append(names, f.Datacenter)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		datacenterNode(root, c, name, dcs[name])
	}
	if len(names) == 0 {
		root.add("no datacenter yet: the members are fixed when the Campaign starts")
	}
	return root
}

// campaignHeader is "campaign/os-2  repave  Running  wave 2/4  412/5000 done, 2 failed".
func campaignHeader(c *v1alpha1.Campaign) string {
	parts := []string{"campaign/" + c.Name, string(c.Spec.Operation), string(phase(c))}
	if w := waveText(c); w != "" {
		parts = append(parts, w)
	}
	parts = append(parts, countsText(c.Status.Counts))
	if held := heldText(c, true); held != "" {
		parts = append(parts, "("+held+")")
	}
	return strings.Join(parts, "  ")
}

// datacenterNode adds a datacenter, its waves and their failed servers.
func datacenterNode(root *node, c *v1alpha1.Campaign, name string, dc *v1alpha1.CampaignDatacenterStatus) {
	text := name
	var counts v1alpha1.CampaignCounts
	if dc != nil {
		counts = dc.Counts
		text += "  " + countsText(counts)
		if p := pausedText(*dc); p != "" {
			text += "  (" + p + ")"
		}
	}
	dcNode := root.add(text)

	// The waves this datacenter has members in (from the plan) or failures in.
	members := map[int32]int32{}
	failures := map[int32][]string{}
	for _, w := range c.Status.Plan {
		for _, d := range w.Datacenters {
			if d.Name == name {
				members[w.Number] = d.Members
			}
		}
	}
	var listed int32
	for _, f := range sortedFailures(c.Status.Failures) {
		if f.Datacenter != name {
			continue
		}
		listed++
		line := f.Hardware + "  job " + f.Job
		if f.Reason != "" {
			line += "  " + f.Reason
		}
		failures[f.Wave] = append(failures[f.Wave], line)
	}
	var waves []int32
	for n := range members {
		waves = append(waves, n)
	}
	for n := range failures {
		if _, ok := members[n]; !ok {
			waves = append(waves, n)
		}
	}
	slices.Sort(waves)
	_, over := ended(c)
	for _, n := range waves {
		text := fmt.Sprintf("wave %d", n)
		if m, ok := members[n]; ok {
			text += fmt.Sprintf("  %d members", m)
		}
		if n == c.Status.CurrentWave && !over {
			text += "  (current)"
		}
		waveNode := dcNode.add(text)
		for _, f := range failures[n] {
			waveNode.add(f)
		}
	}
	if more := counts.Failed - listed; more > 0 {
		dcNode.add(fmt.Sprintf("… %d more failed, not listed: status.failures holds the Campaign's first %d", more, len(c.Status.Failures)))
	}
}

// sortedFailures orders failures by wave, then server name.
func sortedFailures(fs []v1alpha1.CampaignFailure) []v1alpha1.CampaignFailure {
	out := slices.Clone(fs)
	slices.SortStableFunc(out, func(a, b v1alpha1.CampaignFailure) int {
		if a.Wave != b.Wave {
			return int(a.Wave - b.Wave)
		}
		return strings.Compare(a.Hardware, b.Hardware)
	})
	return out
}

// printPlan prints what a server-side dry run of a Campaign said it would do.
func printPlan(w io.Writer, c *v1alpha1.Campaign) {
	counts := c.Status.Counts
	if len(c.Status.Plan) == 0 {
		fmt.Fprintf(w, "The server answered no plan (status.plan is empty): %d servers selected.\n", counts.Targets)
		return
	}
	fmt.Fprintf(w, "%d servers selected, %d skipped (already up to date), in %d waves:\n", counts.Targets, counts.Skipped, waves(c))
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, "WAVE\tSERVERS\tDATACENTERS\tFIRST")
	for _, wave := range c.Status.Plan {
		dcs := make([]string, 0, len(wave.Datacenters))
		for _, d := range wave.Datacenters {
			dcs = append(dcs, fmt.Sprintf("%s=%d", d.Name, d.Members))
		}
		first := strings.Join(wave.FirstMembers, ",")
		if first == "" {
			first = "-"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\n", wave.Number, wave.Members, strings.Join(dcs, ","), first)
	}
	tw.Flush()
}
