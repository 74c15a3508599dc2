"""Golden DeepMedic vectors from the reference's own StochasticDeepMedic, for a given seed.

usage: reference_deepmedic_vectors.py REFERENCE_SSN_DIR SEED OUT_DIR
  REFERENCE_SSN_DIR: the ssn/ folder of the reference repository (biomedia-mira/
  stochastic_segmentation_networks), not part of this project. Writes OUT_DIR/deepmedic_{2d,3d}/
  state_dict.pt (torch.save of the state_dict, batch-norm statistics randomised) and io.pt (an
  input, a sampling mask and the eval-mode outputs), the schema of tests/data/golden.
"""
import sys, os, collections, torch
sys.path.insert(0, sys.argv[1])
torch.distributions.Distribution.set_default_validate_args(False)
from models.stochastic_deepmedic import StochasticDeepMedic
seed, out = int(sys.argv[2]), sys.argv[3]
torch.manual_seed(seed)
for dim, size, osize in ((2, 90, 10), (3, 85, 5)):
    sf = ((5,) * dim, (3,) * dim, (1,) * dim)
    model = StochasticDeepMedic(input_channels=4, num_classes=4, rank=10, scale_factors=sf)
    with torch.no_grad():  # trained-looking statistics and weights
        for name, t in model.state_dict().items():
            if name.endswith('running_mean'): t.copy_(torch.randn_like(t) * 0.3)
            elif name.endswith('running_var'): t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith('num_batches_tracked'): t.fill_(seed * 100 + 7)
            elif name.endswith('norm.weight') or name.endswith('norm.bias'): t.add_(torch.randn_like(t) * 0.1)
    model.eval()
    x = torch.randn((2, 4) + (size,) * dim)
    mask = (torch.rand((2,) + (osize,) * dim) > 0.3).float()
    with torch.no_grad():
        logits, state = model(x, sampling_mask=mask)
    folder = os.path.join(out, 'deepmedic_%dd' % dim)
    os.makedirs(folder, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(folder, 'state_dict.pt'))
    torch.save({'input': x, 'sampling_mask': mask, 'logit_mean': state['logit_mean'],
                'cov_diag': state['cov_diag'], 'cov_factor': state['cov_factor']}, os.path.join(folder, 'io.pt'))
    print(folder, logits.shape)
