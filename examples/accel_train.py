"""Train a miniai model with Hugging Face accelerate: one process, several GPUs, several machines, or CPU processes.

The recipe works for any miniai training: build the Learner as usual, but use `AccelerateCB` in place of
`TrainCB` + `DeviceCB` (and of `MixedPrecision`: the precision comes from accelerate), end the script with
`acc.wait_for_everyone(); acc.end_training()`, and start it with a launcher. `--bs` is the batch size of ONE
process: with N processes each step sees N*bs images.

  python examples/accel_train.py                                          # one process (GPU if there is one)
  accelerate launch --multi_gpu --num_processes 4 examples/accel_train.py # 4 GPUs, one machine
  accelerate launch --multi_gpu --num_processes 4 --mixed_precision bf16 examples/accel_train.py
  accelerate launch --num_machines 2 --machine_rank 0 --main_process_ip 10.0.0.1 --main_process_port 29500 \\
      --multi_gpu --num_processes 16 examples/accel_train.py             # the same on each machine, with its rank
  accelerate launch --multi_gpu --num_processes 2 --main_process_port 29501 examples/accel_train.py --cpu  # 2 CPU processes
  torchrun --nproc_per_node 2 --master_addr 127.0.0.1 --master_port 29501 examples/accel_train.py --cpu     # the same

On a machine without GPUs the script needs `--cpu` (it makes the Accelerator with cpu=True): without it the two
processes started by `--multi_gpu` each think they are alone. `accelerate launch --cpu --num_processes 2` is no
substitute: without an MPI host file it starts ONE process (accelerate 1.15).
tests/test_distributed.py runs the torchrun line and checks the result against one process.
"""
import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn, optim
from torcheval.metrics import MulticlassAccuracy

from miniai.core import set_seed
from miniai.datasets import fashion_mnist_tensors, DataLoaders
from miniai.learner import Learner, MetricsCB, ProgressCB
from miniai.checkpoint import CheckpointCB
from miniai.accel import AccelerateCB

def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--bs', type=int, default=128, help='batch size of each process')
    p.add_argument('--lr', type=float, default=0.2)
    p.add_argument('--n_train', type=int, default=None, help='first n training images (default: all 60,000)')
    p.add_argument('--n_test', type=int, default=None, help='first n test images (default: all 10,000)')
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--no_shuffle', action='store_true', help='keep the data order (the distributed test needs it)')
    p.add_argument('--cpu', action='store_true', help='train on the CPU even if there is a GPU (needed for CPU processes)')
    p.add_argument('--mixed_precision', default=None, choices=['no', 'fp16', 'bf16'],
                   help="default: what `accelerate launch --mixed_precision` or `accelerate config` says, else 'no'")
    p.add_argument('--progress', action='store_true', help='progress bars (main process only)')
    p.add_argument('--checkpoint', type=Path, default=None, help='CheckpointCB: write a checkpoint here after every epoch (main process only)')
    p.add_argument('--resume', action='store_true', help='continue the run saved in --checkpoint (every process reads it)')
    p.add_argument('--weights_dir', type=Path, default=None, help='debugging: every process writes its final weights to DIR/rank{i}.pt')
    return p

def get_model(): return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))

def train(args):
    "Train an MLP on flat Fashion-MNIST with `AccelerateCB`; returns the learner and the callback."
    set_seed(args.seed)
    data = fashion_mnist_tensors(n_train=args.n_train, n_test=args.n_test)
    flat = lambda t: (t[0].flatten(1), t[1])
    dls = DataLoaders.from_tensors(flat(data['train']), flat(data['test']), bs=args.bs, shuffle=not args.no_shuffle)
    acb = AccelerateCB(cpu=args.cpu, mixed_precision=args.mixed_precision)
    ckcb = None if args.checkpoint is None else CheckpointCB(args.checkpoint, resume=args.resume)
    cbs = [acb, MetricsCB(accuracy=MulticlassAccuracy())] + ([ProgressCB()] if args.progress else []) + ([ckcb] if ckcb else [])
    learn = Learner(get_model(), dls, F.cross_entropy, lr=args.lr, cbs=cbs, opt_func=optim.SGD)
    learn.fit(args.epochs)
    if args.weights_dir is not None:
        args.weights_dir.mkdir(parents=True, exist_ok=True)
        torch.save({'model': learn.model.state_dict(), 'history': learn.metrics.history, 'n_processes': acb.acc.num_processes,
                    'saved_epoch': -1 if ckcb is None or ckcb.saved_epoch is None else ckcb.saved_epoch},
                   args.weights_dir/f'rank{acb.acc.process_index}.pt')
    acb.acc.print(f'{acb.acc.num_processes} process(es), {acb.acc.distributed_type}, mixed precision {acb.acc.mixed_precision}: '
                  f'{learn.metrics.history[-1]}')
    return learn, acb

if __name__ == '__main__':
    learn, acb = train(get_parser().parse_args())
    # Every process waits for the others, then leaves the process group: a process that exits while gloo's threads
    # still run can abort ("terminate called without an active exception") after a run that went well.
    acb.acc.wait_for_everyone()
    acb.acc.end_training()
