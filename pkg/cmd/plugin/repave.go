package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/pkg/generated/clientset/versioned/scheme"
)

// DatacenterNameLabel is the label by which `repave -l` with a namespace
// selects that namespace's Datacenter: the server sets it on every
// Datacenter, to its name.
const DatacenterNameLabel = v1alpha1.DatacenterNameLabel

const repaveLong = `Repave servers to a Template.

Named servers (Hardware in the namespace -n, which names their datacenter)
each get a repave Job through POST hardwares/NAME/repave:

  kubectl stargate repave server-001 server-002 -n dc-west --template os-2

A label selector (-l) creates a Campaign instead (generateName repave-,
operation repave, templateRef --template, hardwareSelector -l), which repaves
the selected servers in waves within its limits (the server's defaults: one
wave, 10% unavailable at once, 5% failures). Which datacenters it covers:

  -n DC (or the kubeconfig's namespace)  the Datacenter named DC, selected by
                                         its label stargate.io/datacenter=DC
  --datacenters SEL                      the Datacenters whose labels match SEL
                                         (not with -n)
  -A                                     every Datacenter (-n is ignored)

A selector that matches no Hardware there is refused, as the Campaign would
have no server to repave.

For waves, limits, budgets and maintenance windows, write the Campaign's YAML
and kubectl create it; --dry-run=server -o yaml prints a starting point.

--dry-run=server asks the server what it would do and prints its answer: for
named servers the Job each would get, for a Campaign its plan (status.plan:
members per wave and datacenter, and the first of each wave).

--wait waits for the Jobs to finish (exit 1 if one failed), or for the
Campaign as kubectl stargate status does.`

type repaveOptions struct {
	template    string
	selector    string
	datacenters string
	allDCs      bool
	wait        bool
	timeout     time.Duration
	dryRun      string
	printFlags  *genericclioptions.PrintFlags
}

func newRepaveCommand(env *environment) *cobra.Command {
	o := &repaveOptions{
		dryRun: "none",
		// No go-template printers: their --template flag is ours.
		printFlags: &genericclioptions.PrintFlags{
			OutputFormat:       new(string),
			JSONYamlPrintFlags: genericclioptions.NewJSONYamlPrintFlags(),
			NamePrintFlags:     genericclioptions.NewNamePrintFlags("created"),
		},
	}
	o.printFlags.WithTypeSetter(scheme.Scheme)
	cmd := &cobra.Command{
		Use:   "repave (HARDWARE... | -l SELECTOR) --template TEMPLATE",
		Short: "Repave named servers, or those a label selector picks as a Campaign",
		Long:  repaveLong,
		Example: `  kubectl stargate repave server-001 -n dc-west --template os-2 --wait
  kubectl stargate repave -l stargate.io/pool=training-a -n dc-west --template os-2
  kubectl stargate repave -l stargate.io/pool=training-a -A --template os-2 --dry-run=server
  kubectl stargate repave -l stargate.io/pool=training-a --datacenters region=eu --template os-2 --wait`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(args); err != nil {
				return err
			}
			client, err := env.client()
			if err != nil {
				return err
			}
			if o.selector != "" {
				return o.runCampaign(cmd.Context(), env, client)
			}
			return o.runNamed(cmd.Context(), env, client, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.template, "template", "", "Template to install, looked up in each server's namespace (required).")
	f.StringVarP(&o.selector, "selector", "l", "", "Label selector over Hardware: creates a Campaign over the servers it selects.")
	f.StringVar(&o.datacenters, "datacenters", "", "With -l: label selector over Datacenters the Campaign covers (instead of -n's).")
	f.BoolVarP(&o.allDCs, "all-namespaces", "A", false, "With -l: the Campaign covers every datacenter.")
	f.BoolVar(&o.wait, "wait", false, "Wait for the Jobs, or the Campaign, to finish.")
	f.DurationVar(&o.timeout, "timeout", 0, "With --wait: how long to wait before giving up (exit 1); 0 waits for ever.")
	f.StringVar(&o.dryRun, "dry-run", o.dryRun, `"server" to ask the server what it would do without doing it; "none" to do it.`)
	f.Lookup("dry-run").NoOptDefVal = "server"
	o.printFlags.AddFlags(cmd)
	return cmd
}

func (o *repaveOptions) validate(args []string) error {
	switch {
	case o.template == "":
		return errors.New("--template is required: the Template to install")
	case len(args) > 0 && o.selector != "":
		return errors.New("name servers or select them with -l, not both")
	case len(args) == 0 && o.selector == "":
		return errors.New("name the servers to repave, or select them with -l SELECTOR")
	case o.selector == "" && (o.allDCs || o.datacenters != ""):
		return errors.New("-A and --datacenters go with -l: named servers are in the namespace -n")
	case o.allDCs && o.datacenters != "":
		return errors.New("-A (every datacenter) and --datacenters SEL exclude each other")
	case o.dryRun != "none" && o.dryRun != "server":
		return fmt.Errorf(`--dry-run must be "server" or "none", not %q (a client-side dry run cannot show what the server would do)`, o.dryRun)
	case o.dryRun == "server" && o.wait:
		return errors.New("--wait waits for what a dry run does not do")
	case o.timeout < 0:
		return errors.New("--timeout must not be negative")
	}
	if _, err := o.printFlags.ToPrinter(); err != nil {
		return err
	}
	return nil
}

func (o *repaveOptions) dryRunAll() []string {
	if o.dryRun == "server" {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// printer prints what was created: -o's format, else "KIND/NAME created".
func (o *repaveOptions) printer() (printers.ResourcePrinter, error) {
	pf := *o.printFlags
	names := *pf.NamePrintFlags
	pf.NamePrintFlags = &names
	if o.dryRun == "server" {
		if err := pf.Complete("%s (server dry run)"); err != nil {
			return nil, err
		}
	}
	return pf.ToPrinter()
}

// structured says whether -o asks for the object itself (json, yaml).
func (o *repaveOptions) structured() bool {
	f := *o.printFlags.OutputFormat
	return f != "" && f != "name"
}

// runNamed repaves each named server through its /repave subresource, prints
// the Job each got, and with --wait waits for them.
func (o *repaveOptions) runNamed(ctx context.Context, env *environment, client versioned.Interface, names []string) error {
	ns, _, err := env.namespace()
	if err != nil {
		return err
	}
	p, err := o.printer()
	if err != nil {
		return err
	}
	out := env.streams.Out
	var jobs []string
	var errs []error
	for _, hw := range names {
		req := &v1alpha1.RepaveRequest{Spec: v1alpha1.RepaveRequestSpec{TemplateRef: v1alpha1.LocalObjectReference{Name: o.template}}}
		got, err := client.StargateV1alpha1().Hardwares(ns).Repave(ctx, hw, req, metav1.CreateOptions{DryRun: o.dryRunAll()})
		if err != nil {
			errs = append(errs, fmt.Errorf("repave hardware.stargate.io/%s in %s: %w", hw, ns, err))
			continue
		}
		if err := o.printRepave(p, hw, ns, got, out, env.streams.ErrOut); err != nil {
			errs = append(errs, err)
			continue
		}
		if got.Status.Job != nil {
			jobs = append(jobs, got.Status.Job.Name)
		}
	}
	if o.wait && len(jobs) > 0 {
		progress := out
		if o.structured() {
			progress = env.streams.ErrOut // keep -o's document parseable
		}
		errs = append(errs, waitJobs(ctx, client, ns, jobs, o.timeout, progress))
	}
	return errors.Join(errs...)
}

// printRepave prints the answer of one /repave: the RepaveRequest itself for
// -o json|yaml, else the Job it made as job.stargate.io/NAME.
func (o *repaveOptions) printRepave(p printers.ResourcePrinter, hw, ns string, got *v1alpha1.RepaveRequest, out, errOut io.Writer) error {
	if o.structured() {
		return p.PrintObj(got, out)
	}
	if got.Status.Job == nil {
		fmt.Fprintf(errOut, "Warning: the server answered the repave of hardware.stargate.io/%s in %s without naming its Job (status.job)", hw, ns)
		if o.dryRun != "server" {
			fmt.Fprintf(errOut, ": kubectl get jobs.stargate.io -n %s --field-selector spec.hardwareRef.name=%s", ns, hw)
		}
		fmt.Fprintln(errOut)
		return nil
	}
	job := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: got.Status.Job.Name, Namespace: ns}}
	return p.PrintObj(job, out)
}

// runCampaign creates the Campaign over the servers -l selects.
func (o *repaveOptions) runCampaign(ctx context.Context, env *environment, client versioned.Interface) error {
	c, err := o.campaign(ctx, env, client)
	if err != nil {
		return err
	}
	if err := o.checkSelectsHardware(ctx, env, client, c); err != nil {
		return err
	}
	created, err := client.StargateV1alpha1().Campaigns().Create(ctx, c, metav1.CreateOptions{DryRun: o.dryRunAll()})
	if err != nil {
		return fmt.Errorf("creating the Campaign: %w", err)
	}
	p, err := o.printer()
	if err != nil {
		return err
	}
	out := env.streams.Out
	if err := p.PrintObj(created, out); err != nil {
		return err
	}
	if o.dryRun == "server" && !o.structured() && *o.printFlags.OutputFormat != "name" {
		printPlan(out, created)
	}
	if !o.wait {
		return nil
	}
	progress := out
	if o.structured() {
		progress = env.streams.ErrOut
	}
	return followCampaign(ctx, env, client, created.Name, statusOptions{watch: true, timeout: o.timeout}, progress)
}

// campaign builds the Campaign: the Hardware -l selects, in the datacenters
// -A, --datacenters or the namespace name.
func (o *repaveOptions) campaign(ctx context.Context, env *environment, client versioned.Interface) (*v1alpha1.Campaign, error) {
	hw, err := labelSelector(o.selector)
	if err != nil {
		return nil, fmt.Errorf("-l %q: %w", o.selector, err)
	}
	c := &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "repave-"},
		Spec: v1alpha1.CampaignSpec{
			Operation:        v1alpha1.OperationRepave,
			TemplateRef:      &v1alpha1.LocalObjectReference{Name: o.template},
			HardwareSelector: hw,
		},
	}
	switch {
	case o.allDCs:
	case o.datacenters != "":
		// -A wins over -n, as in kubectl; --datacenters and -n both
		// choose datacenters, and silently dropping one would repave
		// elsewhere than asked.
		if _, explicit, err := env.namespace(); err != nil {
			return nil, err
		} else if explicit {
			return nil, errors.New("-n/--namespace and --datacenters cannot be used together: -n names one datacenter, --datacenters SEL selects them by label")
		}
		if c.Spec.DatacenterSelector, err = labelSelector(o.datacenters); err != nil {
			return nil, fmt.Errorf("--datacenters %q: %w", o.datacenters, err)
		}
	default:
		ns, _, err := env.namespace()
		if err != nil {
			return nil, err
		}
		if err := checkDatacenterLabel(ctx, client, ns); err != nil {
			return nil, err
		}
		c.Spec.DatacenterSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: DatacenterNameLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{ns},
		}}}
	}
	return c, nil
}

// checkSelectsHardware makes sure that -l selects some Hardware where the
// Campaign c looks (the namespace -n, every namespace with -A, those of the
// Datacenters --datacenters selects), so that a mistyped selector is not a
// Campaign of no member that completes at once. A caller not allowed to
// list Hardware or Datacenters is warned and trusted.
func (o *repaveOptions) checkSelectsHardware(ctx context.Context, env *environment, client versioned.Interface, c *v1alpha1.Campaign) error {
	hw, err := metav1.LabelSelectorAsSelector(c.Spec.HardwareSelector)
	if err != nil {
		return fmt.Errorf("-l %q: %w", o.selector, err)
	}
	opts := metav1.ListOptions{LabelSelector: hw.String(), Limit: 1}
	var namespaces []string
	var where, getFlags string
	switch {
	case o.allDCs:
		namespaces, where, getFlags = []string{metav1.NamespaceAll}, "any namespace (-A)", "-A"
	case o.datacenters != "":
		dcs, err := metav1.LabelSelectorAsSelector(c.Spec.DatacenterSelector)
		if err != nil {
			return fmt.Errorf("--datacenters %q: %w", o.datacenters, err)
		}
		list, err := client.StargateV1alpha1().Datacenters().List(ctx, metav1.ListOptions{LabelSelector: dcs.String()})
		switch {
		case apierrors.IsForbidden(err):
			fmt.Fprintf(env.streams.ErrOut, "Warning: not allowed to list Datacenters, so not checking that -l %q selects any Hardware\n", o.selector)
			return nil
		case err != nil:
			return fmt.Errorf("listing the Datacenters --datacenters %q selects: %w", o.datacenters, err)
		case len(list.Items) == 0:
			return fmt.Errorf("--datacenters %q selects no Datacenter: the Campaign would have no server to repave (kubectl get datacenters -l %q lists what it selects)", o.datacenters, o.datacenters)
		}
		namespaces = make([]string, len(list.Items))
		for i, dc := range list.Items {
			namespaces[i] = dc.Name
		}
		where = fmt.Sprintf("the datacenters --datacenters %q selects (%s)", o.datacenters, strings.Join(namespaces, ", "))
		getFlags = "-n DATACENTER"
	default:
		ns, _, err := env.namespace()
		if err != nil {
			return err
		}
		namespaces, where, getFlags = []string{ns}, "datacenter "+ns+" (namespace "+ns+")", "-n "+ns
	}
	for _, ns := range namespaces {
		list, err := client.StargateV1alpha1().Hardwares(ns).List(ctx, opts)
		switch {
		case apierrors.IsForbidden(err):
			fmt.Fprintf(env.streams.ErrOut, "Warning: not allowed to list Hardware, so not checking that -l %q selects any\n", o.selector)
			return nil
		case err != nil:
			return fmt.Errorf("listing the Hardware -l %q selects: %w", o.selector, err)
		case len(list.Items) > 0:
			return nil
		}
	}
	return fmt.Errorf("-l %q selects no Hardware in %s: the Campaign would have no server to repave, so none was created (kubectl get hardware %s -l %q lists what it selects)",
		o.selector, where, getFlags, o.selector)
}

// checkDatacenterLabel makes sure the Datacenter named ns exists and carries
// the label the Campaign selects it by, so that a Campaign does not silently
// cover nothing. A caller not allowed to read Datacenters is trusted.
func checkDatacenterLabel(ctx context.Context, client versioned.Interface, ns string) error {
	dc, err := client.StargateV1alpha1().Datacenters().Get(ctx, ns, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("there is no datacenter.stargate.io/%s: -n names the datacenter whose servers -l selects (or use --datacenters SEL, or -A for all)", ns)
	case apierrors.IsForbidden(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading Datacenter %q: %w", ns, err)
	}
	if dc.Labels[DatacenterNameLabel] != ns {
		return fmt.Errorf("datacenter.stargate.io/%s lacks the label %s=%s by which a Campaign selects it; label it (kubectl label datacenter %s %s=%s) or use --datacenters SEL or -A",
			ns, DatacenterNameLabel, ns, ns, DatacenterNameLabel, ns)
	}
	return nil
}
