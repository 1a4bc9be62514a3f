"""Grounding boxes: every form GLM-V writes, 0-1000 to pixels, matching and drawing."""
import numpy as np
from PIL import Image

from glmv.apps.ground import question_for
from glmv.outputs.boxes import boxed, draw_boxes, iou, matched_iou, parse_boxes, parse_points, to_pixels


def test_every_box_form_is_parsed():
    assert parse_boxes("<|begin_of_box|>[12,34,560,780]<|end_of_box|>") == [[12, 34, 560, 780]]
    assert parse_boxes("<|begin_of_box|>[[1,2,3,4],[5, 6, 7, 8]]<|end_of_box|>") == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert parse_boxes('```json\n[{"bbox_2d": [100, 200, 300, 400], "label": "cat"}]\n```') == [[100, 200, 300, 400]]
    assert parse_boxes("the cat [10.5,20,30,40] and the dog [50,60,70,80].") == [[10.5, 20, 30, 40], [50, 60, 70, 80]]
    assert parse_boxes("no box here [1,2,3]") == []
    assert parse_points("click <|begin_of_box|>[500,250]<|end_of_box|> not [1,2,3,4]") == [[500, 250]]
    assert boxed("The answer is <|begin_of_box|> 42 <|end_of_box|>.") == "42" and boxed(" 7 ") == "7"


def test_thousandths_become_clamped_pixels():
    assert to_pixels([0, 0, 1000, 1000], 640, 480) == [0, 0, 640, 480]
    assert to_pixels([250, 500, 750, 1000], 200, 100) == [50, 50, 150, 100]
    assert to_pixels([-20, 10, 1200, 500], 100, 100) == [0, 1, 100, 50]


def test_matching_scores_missing_and_extra_boxes_as_zero():
    a, b = [0, 0, 100, 100], [500, 500, 600, 600]
    assert iou(a, a) == 1 and iou(a, b) == 0 and abs(iou(a, [50, 0, 150, 100]) - 1 / 3) < 1e-9
    assert matched_iou([b, a], [a, b]) == 1  # order does not matter
    assert matched_iou([a], [a, b]) == 0.5 and matched_iou([a, b], [a]) == 0.5
    assert matched_iou([], []) == 1 and matched_iou([], [a]) == 0


def test_boxes_are_drawn_where_they_say():
    image = Image.new("RGB", (200, 100), (128, 128, 128))
    out = np.asarray(draw_boxes(image, [[20, 40, 120, 90]], ["cat"], width=2))
    assert tuple(out[60, 20]) != (128, 128, 128) and tuple(out[60, 70]) == (128, 128, 128)
    assert tuple(out[89, 70]) == tuple(out[60, 20])  # the bottom edge, same colour
    assert np.asarray(image).std() == 0  # the input is left alone


def test_grounding_question_reads_naturally():
    assert question_for("red car") == ("Tell me the position of the red car in the picture. "
                                       "Answer in [x1,y1,x2,y2] format.")
    assert question_for("every star?").startswith("Tell me the position of every star in")
