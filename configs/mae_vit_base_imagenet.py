r"""MAE ViT-B/16 on ImageNet, the paper's pretraining recipe: mask ratio 0.75, decoder 8 blocks x 512 (16 heads),
per-patch normalised pixel loss, AdamW with lr 1.5e-4 x B/256, betas (0.9, 0.95), weight decay 0.05, batch
4096, 40 warmup epochs, 800 epochs, cosine decay; augmentation: random resized crop (scale 0.2-1) and flip.
Evaluation: MAE's linear probing of the class token (`linear_mae`: BatchNorm without affine before the head,
LARS, batch 16384, 90 epochs), our fast probe (`linear_fast`), and end-to-end fine-tuning (mean pooling, 100
epochs, batch 1024, lr 5e-4 x B/256, layer decay 0.65, drop path 0.1, label smoothing 0.1; the paper also uses
RandAugment, mixup 0.8 and CutMix 1.0, not implemented here).

  python -m ssljax.train --config configs/mae_vit_base_imagenet.py --workdir gs://BUCKET/mae_vit_base
  python -m ssljax.train --config configs/mae_vit_base_imagenet.py:runlocal --workdir /tmp/ssljax/mae_vit_base_local

Needs tfds `imagenet2012` as ArrayRecord (see configs/simclr_imagenet.py). Expected (paper, 800 epochs): 83.x%
fine-tuning top-1 (83.6 at 1600 epochs) under the paper's fine-tuning recipe (which adds the augmentations above
that ssljax lacks), ~68% under its linear probing (`linear_mae/ssl/all`). Not yet measured with this codebase.
"""

from ml_collections import config_dict

from configs import mae_cifar10


def get_config(arg: str = ""):
  config = mae_cifar10.get_config()
  config.dataset = dict(
    name="imagenet2012",
    train_split="train",
    test_split="validation",
    image_size=224,
    channels=3,
    data_dir=config_dict.placeholder(str),
    skip_bad_files=False,
    center_crop=0.875,  # Evaluation images: 224 px out of 256, as the papers.
    host_crops=True,  # Views cropped from the full decoded image on the host, as the reference pipelines.
    # Antialiased (a box filter): the nearest kind here to MAE's torchvision RandomResizedCrop, PIL's bicubic, which
    # widens its kernel when it shrinks.
    host_resize="area",
    worker_processes=0,  # > 0: batches also read in that many processes (many-core hosts).
  )
  config.model = dict(name="vit", variant="B", width=None, depth=None, num_heads=None, patch_size=16, pool="cls")
  config.mae = dict(mask_ratio=0.75, norm_pix=True, decoder_width=512, decoder_depth=8, decoder_heads=16)
  config.dtype = "bfloat16"
  config.batch_size = 4096
  config.epochs = 800
  config.optimizer.update(base_lr=1.5e-4, warmup_steps=0, warmup_epochs=40)
  config.checkpoint_every = 5000
  config.evals.linear.update(label_budgets=("all",), steps=20000)
  config.evals.finetune.update(label_budgets=("all",), batch_size=1024, epochs=100, warmup_epochs=5)
  config.evals.finetune.optimizer.update(base_lr=5e-4, layer_decay=0.65)
  config.evals.linear_mae.update(batch_size=16384, baselines=())
  if "runlocal" in arg.split(","):
    config.dataset.image_size = 32
    config.model.update(patch_size=8, width=64, depth=2, num_heads=2)
    config.mae.update(decoder_width=32, decoder_depth=1, decoder_heads=2)
    config.dtype = "float32"
    config.batch_size = 32
    config.total_steps = 10
    config.log_every = 2
    config.evals.linear.steps = 50
    config.evals.finetune.update(batch_size=32, epochs=1)
    config.evals.linear_mae.update(batch_size=32, epochs=1, warmup_epochs=0)
  return config
