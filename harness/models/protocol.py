"""What the harness asks of a model built by ``build_model`` (VideoViT, VideoSwin and method-owned networks).

The runner, the FLOP counter, the trainer and the reports only use these members, so a method with
its own network (HaltingVT) plugs in by providing them:

    cfg: VideoViTConfig | VideoSwinConfig  dims of the input and the classifier
    forward(clip [B,3,T,H,W]) -> logits  in eval mode
    last_stats: ForwardStats             what the last forward ran, block by block
    describe() -> dict                   what a record says about the method (schedules, modes)
    view_macs() -> MacsCount             MACs of one view that the last forward really executed
    sample_macs() -> list[float] | None  per-sample theoretical MACs of the last forward's clips
                                         (adaptive methods: from each clip's active-token counts;
                                         None when every clip costs the same)
    training_loss(batch) -> (loss, logs) in train mode; ``batch`` has "clips" [B,3,T,H,W] (normalised),
                                         "labels" [B] and whatever the method's ``train_batch`` added
    load_checkpoint(path) -> str         strict load of a fine-tuned checkpoint; returns its layout and
                                         keeps it in ``checkpoint_layout`` (None until a load)
    init_from(path) -> dict              non-strict initialisation before fine-tuning (e.g. a dense
                                         checkpoint, an image ViT); returns what was loaded/left new
"""
