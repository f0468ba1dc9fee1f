"""The options each aesthetics loader accepts (name -> one-line description).

Standard library only: the family's hooks list them without importing the loaders;
task validation refuses any other key.
"""

AVA_OPTIONS = {
    "root": "folder of the AVA_dataset release (required; relative to the task file)",
    "source": "'files' (AVA.txt, default) or 'datasets' (a Hugging Face table)",
    "ava_file": "vote table, default AVA.txt (relative to root)",
    "tags_file": "tag names, default tags.txt (relative to root; optional)",
    "challenges_file": "challenge names, default challenges.txt (relative to root; optional)",
    "test_list": "official test list, e.g. aesthetics_image_lists/generic_test.jpgl (optional)",
    "train_list": "official train list (optional; without it every non-test image is train/val)",
    "images_dir": "image folder relative to root, default images",
    "image_pattern": "file name inside images_dir, default {id}.jpg",
    "check_images": "report and drop rows whose image file is missing (default true)",
    "min_tag_images": "keep only tags with at least this many images (paper: 1000; default 0)",
    "strict": "fail on the first malformed row instead of reporting it (default false)",
    "hf_path": "source=datasets: save_to_disk folder or local data folder (relative to root)",
    "hf_split": "source=datasets: split name, or 'all' (default; a split named 'test' is the test split)",
    "hf_columns": "source=datasets: {id, image, votes | vote_columns, tag1, tag2, challenge} column names",
}


PARAM_SWEEP_OPTIONS = {
    "root": "folder of generated images (required; relative to the task file)",
    "manifest": "CSV with columns path,prompt_id,param[,prompt] (relative to root; optional: "
                "without it the layout <root>/<prompt_id>/<param>/<image> is read)",
    "prompts": "mapping prompt_id -> prompt text (optional)",
    "param_name": "name of the parameter, e.g. cfg_scale (default param)",
    "strict": "fail on the first malformed entry instead of reporting it (default false)",
}

SYNTHETIC_QUALITY_OPTIONS = {
    "n_images": "number of images (default 600)",
    "seed": "generator seed (default 0)",
    "size": "render size in px (default 64)",
    "votes_min": "fewest votes per image (60)",
    "votes_max": "most votes per image (150)",
    "vote_std": "std of a vote around the latent MOS (1.5)",
    "p_no_style_tag": "share of the images without an intent that have no tag 2 (0.1)",
    "p_intent": "share of images made for a soft-focus / film-grain theme, tag 2 naming it (0.3)",
}

SYNTHETIC_SWEEP_OPTIONS = {
    "n_prompts": "prompts (backgrounds), default 4",
    "scenes_per_prompt": "scenes per prompt, default 8",
    "levels": "degradation levels, default [0, .25, .5, .75, 1]",
    "seed": "generator seed (default 0)",
    "size": "render size in px (default 64)",
}
